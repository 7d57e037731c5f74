"""cnnlab: image recognition with convolutional networks, end to end.

Python API (the CLI is a thin layer over it)::

    import cnnlab
    run = cnnlab.train(cnnlab.TrainConfig(dataset="digits", model="lenet5", epochs=10))
    run.metrics["accuracy"]
    run = cnnlab.load_run("runs/digits-lenet5")
    probs = run.predict(images)           # uint8 (N, C, H, W) or float in [0, 1]
    report = run.evaluate("digits")
"""

__version__ = "0.1.0"

from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.data import list_datasets, load_dataset  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.models import create_model, list_models, model_stats  # noqa: E402
from cnnlab.run import Run, load_run, train  # noqa: E402

__all__ = ["CnnlabError", "Run", "TrainConfig", "create_model", "list_datasets", "list_models",
           "load_dataset", "load_run", "model_stats", "train"]
