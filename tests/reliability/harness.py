"""`python -m mwc_dist.train` with one fault injected, for the reliability tests (test code: the product has no hooks).

    MWC_FAULT=nan-on-rank:1:3,4    rank 1's loss is NaN during optimizer steps 3 and 4 (rank 0's stays finite)
    MWC_FAULT=stall-checkpoint:4   checkpoint-4 stalls half-written (state/ and model/ on disk, trainer_state.json
                                   not yet) after touching <output_dir>/STALLED: the test kills -9 there
    MWC_FAULT=stop-rank:1:3        rank 1 freezes itself (SIGSTOP) at step 3: a hung rank; the others must time out
    MWC_FAULT=record-dtypes        not a fault, a probe: every rank writes <output_dir>/dtypes/rank-<N>.json with the
                                   dtype of real layers' outputs (first encoder and decoder fc1) and of their weights

Every rank writes its pid to <output_dir>/pids/rank-<N>.pid. Run it as a script (accelerate launch harness.py ...).
"""

import os
import signal
import sys
import time
from pathlib import Path

import torch

from mwc_dist import checkpoint
from mwc_dist.train import Trainer, main

kind, *args = os.environ.get("MWC_FAULT", "none").split(":")
setup, compute_loss, to_json = Trainer.setup, Trainer.compute_loss, checkpoint.TrainState.to_json


def _setup(self):
    setup(self)
    pids = self.out_dir / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"rank-{self.accelerator.process_index}.pid").write_text(str(os.getpid()))
    checkpoint.OUT_DIR = self.out_dir
    if kind == "record-dtypes":
        _record_dtypes(self)


def _record_dtypes(self):
    import json

    model = self.accelerator.unwrap_model(self.model)
    seen, path = {}, self.out_dir / "dtypes" / f"rank-{self.accelerator.process_index}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, layer in (("encoder.fc1", model.get_encoder().layers[0].fc1), ("decoder.fc1", model.get_decoder().layers[0].fc1)):
        def hook(module, inputs, output, name=name):
            if name not in seen:
                seen[name] = str(output.dtype)
                seen[name.replace("fc1", "weight")] = str(module.weight.dtype)
                path.write_text(json.dumps(seen))
        layer.register_forward_hook(hook)


def _compute_loss(self, features, labels, teacher_features=None):
    loss, ce, kl = compute_loss(self, features, labels, teacher_features)
    step = self.state.step + 1
    if kind == "nan-on-rank" and self.accelerator.process_index == int(args[0]) and str(step) in args[1].split(","):
        loss = loss * torch.tensor(float("nan"))
    if kind == "stop-rank" and self.accelerator.process_index == int(args[0]) and step == int(args[1]):
        os.kill(os.getpid(), signal.SIGSTOP)
    return loss, ce, kl


def _to_json(self):
    if kind == "stall-checkpoint" and self.step == int(args[0]):
        (checkpoint.OUT_DIR / "STALLED").touch()
        time.sleep(600)
    return to_json(self)


Trainer.setup, Trainer.compute_loss, checkpoint.TrainState.to_json = _setup, _compute_loss, _to_json

if __name__ == "__main__":
    sys.exit(main())
