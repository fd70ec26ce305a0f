#!/bin/bash
# Two (or N) "nodes" on one machine: network namespaces mwcn1..N, each with its own address on a bridge, all
# sharing this machine's filesystem (as cluster nodes share NFS). Root only. This host is 10.77.0.254 on mwcbr0.
#   ./nodes_up.sh [N]      -> mwcn1..mwcnN at 10.77.0.1..N ;  nsenter --net=/var/run/netns/mwcnI <cmd> runs on node I
# gloo binds to the hostname's address, 127.0.0.1 in every namespace: set GLOO_SOCKET_IFNAME=eth0 there.
# (Copied from the project's shared recipe so that a clone of this repository has it.)
set -euo pipefail
n=${1:-2}
ip link show mwcbr0 >/dev/null 2>&1 || { ip link add mwcbr0 type bridge; ip addr add 10.77.0.254/24 dev mwcbr0; }
ip link set mwcbr0 up
for i in $(seq "$n"); do
  ip netns list | grep -qw "mwcn$i" && continue
  ip netns add "mwcn$i"
  ip link add "mwch$i" type veth peer name eth0 netns "mwcn$i"
  ip link set "mwch$i" master mwcbr0 up
  ip -n "mwcn$i" addr add "10.77.0.$i/24" dev eth0
  ip -n "mwcn$i" link set eth0 up
  ip -n "mwcn$i" link set lo up
done
