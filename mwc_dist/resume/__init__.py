"""Resume in one place:

- ``state.py``: ``TrainState``, where the run is (steps, epoch, every rank's data position, best metric), advanced
  only by its own methods
- ``checkpoint.py``: the files: atomic save, rotation (last K), the latest complete checkpoint, load; ``best/``
- ``policy.py``: ``Checkpointer``, checkpoint.*: when to save, what to resume from, when best/ changes
"""
