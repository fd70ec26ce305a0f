"""`python -m mwc_dist.train` with one fault injected, for the reliability tests (test code: the product has no hooks).

    MWC_FAULT=nan-on-rank:1:3,4    rank 1's loss is NaN during optimizer steps 3 and 4 (rank 0's stays finite);
                                   nan-on-rank:1:3:first only in the first micro-batch of step 3
    MWC_FAULT=inf-grad-on-rank:0:5 rank 0's loss is finite in step 5 but its gradients are inf (an fp16 overflow)
    Several faults: separated by ';'. MWC_PROBE_DIGESTS=1: a weight hash per rank after every optimizer step.
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

import torch
from faults import InfGrad

from mwc_dist.resume import state as train_state
from mwc_dist.train import Trainer, main

FAULTS = [f.split(":") for f in os.environ.get("MWC_FAULT", "none").split(";")]  # several: "a:...;b:..."
kind, *args = FAULTS[0]
setup, compute_loss, to_json, train_step = (
    Trainer.setup,
    Trainer.compute_loss,
    train_state.TrainState.to_json,
    Trainer.train_step,
)


def _setup(self):
    setup(self)
    pids = self.out_dir / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"rank-{self.accelerator.process_index}.pid").write_text(str(os.getpid()))
    train_state.OUT_DIR = self.out_dir
    if kind == "record-dtypes":
        _record_dtypes(self)
    self.micro_in_step = 0


def _record_dtypes(self):
    import json

    model = self.accelerator.unwrap_model(self.model)
    seen, path = {}, self.out_dir / "dtypes" / f"rank-{self.accelerator.process_index}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, layer in (
        ("encoder.fc1", model.get_encoder().layers[0].fc1),
        ("decoder.fc1", model.get_decoder().layers[0].fc1),
    ):

        def hook(module, inputs, output, name=name):
            if name not in seen:
                seen[name] = str(output.dtype)
                seen[name.replace("fc1", "weight")] = str(module.weight.dtype)
                path.write_text(json.dumps(seen))

        layer.register_forward_hook(hook)


def _compute_loss(self, features, labels, teacher_features=None, decoder_input_ids=None, stored_topk=None):
    """nan-on-rank:R:S1,S2[:first] / inf-grad-on-rank:R:S1,..[:first]: rank R's loss is NaN (or its gradient inf)
    in optimizer steps S1, S2, ... (all their micro-batches, or only the first with :first)."""
    loss, ce, kl = compute_loss(self, features, labels, teacher_features, decoder_input_ids, stored_topk)
    step, rank = self.state.step + 1, self.accelerator.process_index
    for fault, *fargs in FAULTS:
        hit = (
            fault in ("nan-on-rank", "inf-grad-on-rank")
            and rank == int(fargs[0])
            and str(step) in fargs[1].split(",")
            and (len(fargs) < 3 or self.micro_in_step == 0)
        )
        if hit and fault == "nan-on-rank":
            loss = loss * torch.tensor(float("nan"))
        elif hit:
            loss = InfGrad.apply(loss)
        if fault == "stop-rank" and rank == int(fargs[0]) and step == int(fargs[1]):
            os.kill(os.getpid(), signal.SIGSTOP)
    return loss, ce, kl


def _train_step(self, batch):
    """Counts micro-batches; with MWC_PROBE_DIGESTS=1 every rank appends, after each optimizer step, a hash of the
    weights it holds (under ZeRO-3 its own partition) to <output_dir>/digests/rank-<N>.jsonl."""
    import hashlib
    import json

    train_step(self, batch)
    self.micro_in_step += 1
    if not self.accelerator.sync_gradients:
        return
    self.micro_in_step = 0
    if os.environ.get("MWC_PROBE_DIGESTS") != "1":
        return
    h = hashlib.sha256()
    for name, p in sorted(self.accelerator.unwrap_model(self.model).named_parameters()):
        data = getattr(p, "ds_tensor", p.data)  # ZeRO-3 keeps each rank's partition in ds_tensor
        h.update(name.encode() + data.detach().float().cpu().numpy().tobytes())
    path = self.out_dir / "digests" / f"rank-{self.accelerator.process_index}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"step": self.state.step + 1, "digest": h.hexdigest()}) + "\n")


def _to_json(self):
    if kind == "stall-checkpoint" and self.step == int(args[0]):
        (train_state.OUT_DIR / "STALLED").touch()
        time.sleep(600)
    return to_json(self)


Trainer.setup, Trainer.compute_loss, train_state.TrainState.to_json = _setup, _compute_loss, _to_json
Trainer.train_step = _train_step

if __name__ == "__main__":
    sys.exit(main())
