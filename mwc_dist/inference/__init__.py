"""Decoding and transcription (``mwc transcribe``), one layer per file:

- ``decoding.py``: the decoding policy all decoders share (prompt, ``generate`` arguments, language tokens, Whisper's
  temperature fallback ``Guard``, the PyTorch decode); evaluation uses this and nothing above it
- ``backends.py``: PyTorch, ONNX Runtime and CTranslate2 behind one interface, the engine detected from the folder
- ``windows.py``: long audio cut into model-length windows in pauses, and the output formats
"""
