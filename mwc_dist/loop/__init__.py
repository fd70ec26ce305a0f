"""The parts of the training loop that ``mwc_dist.train.Trainer`` wires together, one job each.

step.py        one optimizer step over an accumulation window, or a skipped one; the divergence guard
log.py         what the micro-batches since the last log add up to, reduced over ranks and logged
periodic.py    evaluation during training (train.eval_steps)
preemption.py  SIGUSR1/SIGTERM -> checkpoint at the next step boundary -> scontrol requeue
"""
