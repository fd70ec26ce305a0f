"""The parts of the training loop that ``mwc_dist.train.Trainer`` wires together, one job each. A file named as a
library module is that module's adapter to the loop: ``losses.py`` calls mwc_dist/losses.py per micro-batch,
``evaluate.py`` calls mwc_dist/evaluate.py every train.eval_steps.

config.py      the train: section (TrainConfig), documented and validated field by field
step.py        one optimizer step over an accumulation window, or a skipped one; the divergence guard
losses.py      the loss of one micro-batch: cross-entropy, or distillation against the teacher (mwc_dist/losses.py)
log.py         what the micro-batches since the last log add up to, reduced over ranks and logged
evaluate.py    evaluation during training (train.eval_steps; mwc_dist/evaluate.py)
preemption.py  SIGUSR1/SIGTERM -> checkpoint at the next step boundary -> scontrol requeue
"""
