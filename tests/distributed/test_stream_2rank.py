"""Two real gloo ranks (accelerate.debug_launcher) stream an odd number of uneven shards."""

import json

import numpy as np

from mwc_dist.audio.encode import write_audio
from mwc_dist.config import DataConfig
from mwc_dist.data.shard import shard_source


def _ranks_read(shard_dir):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    from mwc_dist.data.stream import Tokenize, TrainStream, build_train_loader, load_shard_set
    from mwc_dist.models.tokenizer import load_tokenizer

    acc = Accelerator(cpu=True)
    shards = load_shard_set(DataConfig(shard_dir=shard_dir), "train")
    tokenize = Tokenize(load_tokenizer(), "es", "transcribe")
    result = []
    for epoch in range(2):
        stream = TrainStream(
            shards,
            tokenize,
            batch_size=3,
            seed=1,
            epoch=epoch,
            rank=acc.process_index,
            world_size=acc.num_processes,
            num_workers=2,
            shuffle_buffer=4,
            bucket_size=2,
            max_samples=160000,
        )
        steps = stream.steps_per_epoch()
        keys = []
        for batch in build_train_loader(stream):
            if batch is None:
                continue
            if len(keys) == steps * 3:
                break
            keys += batch["keys"]
            # a collective every step: a rank that ran dry would hang here
            torch.distributed.all_reduce(torch.ones(1))
        result.append((acc.process_index, acc.num_processes, epoch, steps, keys))
    gathered = gather_object(result)
    if acc.is_main_process:
        with open(f"{shard_dir}/ranks.json", "w") as f:
            json.dump(gathered, f)


def test_two_ranks_read_disjoint_samples_in_equal_steps(tmp_path):
    from accelerate import debug_launcher

    rows = []
    for n in range(40):
        wave = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(16000 * (0.5 + 0.03 * n))) / 16000)
        write_audio(tmp_path / f"c{n:02d}.wav", wave.astype(np.float32), 16000)
        rows.append({"file_name": f"c{n:02d}.wav", "text": f"item {n}", "split": "train"})
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "shards"
    shard_source(DataConfig(source=str(tmp_path), shard_samples=9), out, workers=1, progress=False)
    counts = [s["num_samples"] for s in json.loads((out / "train.manifest.json").read_text())["shards"]]
    assert counts == [9, 9, 9, 9, 4]  # an odd number of uneven shards: 3 go to one rank, 2 to the other
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # an in-process Trainer earlier would leak world size 1
    debug_launcher(_ranks_read, args=(str(out),), num_processes=2)
    gathered = json.loads((out / "ranks.json").read_text())
    assert {g[1] for g in gathered} == {2}  # world size 2
    for epoch in range(2):
        per_rank = [g for g in gathered if g[2] == epoch]
        assert len(per_rank) == 2 and per_rank[0][3] == per_rank[1][3] > 0  # same steps
        a, b = set(per_rank[0][4]), set(per_rank[1][4])
        assert not a & b and len(a) == len(b) == per_rank[0][3] * 3  # disjoint, no sample twice
