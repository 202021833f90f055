"""Sightline's demo model zoo: generated shape scenes, the bundled models' training, evaluation and fixtures.

Only ``scenes``, ``preprocess``, ``fixtures``, ``evaluate`` (without pycocotools), ``runtime`` (onnxruntime) and
``video.frames`` run without PyTorch; ``train`` and ``nets`` are the dev-only training step (see ``docs/zoo.md``).
"""
