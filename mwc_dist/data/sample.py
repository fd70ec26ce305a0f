"""What a sample dict carries between the shard reader and collate: the one place its keys are written down.

A sample starts as WebDataset's tar record and gains keys stage by stage (data/stream.py's pipeline)::

    __key__       the item's key in the shard (a pack: its members' keys joined by "+")
    __url__       the shard it was read from (WebDataset)
    json          the shard's metadata, bytes (text, language, speaker, duration, segments, prev_text, ...)
    flac | wav    the audio, bytes (16 kHz mono)
    __plan__      augment.AugmentPlan: this epoch's speed and noise (audio/augment.py)
    __duration__  seconds as trained (after the speed change; a pack: its members' sum)
    __members__   a pack's member samples, collated one by one and concatenated (data/pack.py)
    __label__     labels.LabelPlan: timestamps or not, the previous-text prompt or not (data/labels.py)
    __source__    the shard folder an endless mixed stream drew it from (data/mix.py)
"""

from __future__ import annotations

import json
from typing import Any


def trained_duration(sample: dict[str, Any], meta: dict[str, Any] | None = None) -> float:
    """The clip's duration as it will be trained on (after speed perturbation, when planned)."""
    if "__duration__" in sample:
        return sample["__duration__"]
    return (meta if meta is not None else json.loads(sample["json"]))["duration"]
