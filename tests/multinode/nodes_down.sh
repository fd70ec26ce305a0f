#!/bin/bash
# Remove what nodes_up.sh made (namespaces mwcn1..N, their veths, the bridge). Stop your processes in them first.
n=${1:-2}
for i in $(seq "$n"); do ip netns del "mwcn$i" 2>/dev/null; ip link del "mwch$i" 2>/dev/null; done
ip link del mwcbr0 2>/dev/null
true
