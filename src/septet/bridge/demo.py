"""``septet demo bridge``: the six directions checked, then a Keras model trained by a PyTorch
optimizer and a PyTorch module trained by Keras ``fit``, on generated data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from septet.common import DemoReport, atomic_write_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_demo(out_dir: Path) -> DemoReport:
    """Check all directions, train across frameworks both ways, write bridge-demo.json."""
    import keras
    import numpy as np
    import torch

    from septet.bridge.keras_models import KerasLayerFromTorch, TorchModuleFromKeras
    from septet.bridge.selfcheck import check_directions

    started = time.perf_counter()
    checks = [c.as_row() for c in check_directions()]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (np.sin(x @ np.array([[1.0], [-1.0], [0.5], [2.0]], "float32")) + 0.1).astype("float32")

    # A Keras model whose tf.Variables a torch optimizer trains (shared memory, no copies).
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )
    module = TorchModuleFromKeras(keras_model)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch_losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = ((module(xt) - yt) ** 2).mean()
        loss.backward()
        optimizer.step()
        torch_losses.append(loss.item())
    keras_mse = float(np.mean((keras_model(x).numpy() - y) ** 2))

    # A torch module as a Keras layer, trained by Keras fit.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    model = keras.Sequential([keras.Input((4,)), KerasLayerFromTorch(net)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    fit_losses = model.fit(x, y, epochs=8, batch_size=32, verbose=0).history["loss"]

    result = {
        "directions": checks,
        "keras_trained_by_torch": {
            "loss_first": torch_losses[0],
            "loss_last": torch_losses[-1],
            "keras_predict_mse": keras_mse,
        },
        "torch_trained_by_keras_fit": {"loss_first": fit_losses[0], "loss_last": fit_losses[-1]},
        "seconds": time.perf_counter() - started,
    }
    out_path = Path(out_dir) / "bridge-demo.json"
    atomic_write_json(out_path, result)
    passed = sum(c["ok"] for c in checks)
    summary = (
        f"{passed}/6 directions give 39 with gradients 3, 24 and zero copies; "
        f"Keras model trained by torch: loss {torch_losses[0]:.3f} -> {torch_losses[-1]:.3f}; "
        f"torch module trained by Keras fit: {fit_losses[0]:.3f} -> {fit_losses[-1]:.3f}"
    )
    return DemoReport(summary=summary, outputs=[out_path])


if __name__ == "__main__":  # python -m septet.bridge.demo
    print(json.dumps(run_demo(Path(".")).summary))
