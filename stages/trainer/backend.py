"""What differs between Keras backends (TensorFlow, the default and reference; JAX; PyTorch): seeding and
determinism, differentiating a loss, compiling a function. Everything else runs on keras.ops.

The backend is Keras' own choice (the KERAS_BACKEND environment variable, else ~/.keras/keras.json),
fixed when Keras is first imported. Each backend is imported only where it is the one in use, so
a machine with JAX but no TensorFlow runs the whole train/evaluate path.
"""

from __future__ import annotations

import os
from typing import Callable

import keras

# Gradients of L(weights) on one mini-batch: weights -> (loss, gradients), same structure as weights.
LossAndGradient = Callable[[list], tuple]
# XLA reads its flags once, when JAX starts its first device.
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def name() -> str:
    return keras.backend.backend()


def version() -> str:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(name())
    return __import__(module).__version__ if module else "unknown"


def seed_everything(seed: int, deterministic: bool) -> None:
    """Same params + same seed + same machine -> same weights, batches, dropout masks and metrics.

    keras.utils.set_random_seed seeds Python, NumPy, Keras' own generators (which draw every
    weight and dropout mask on every backend) and TensorFlow and PyTorch where present. On a CPU
    every backend is then deterministic; `deterministic` also picks deterministic GPU kernels.
    """
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif name() == "jax":
        import jax
        from jax._src import xla_bridge  # Private, but the only way to ask; hence the getattr.

        if JAX_DETERMINISM_FLAG in os.environ.get("XLA_FLAGS", ""):
            return
        if not getattr(xla_bridge, "backends_are_initialized", lambda: False)():
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {JAX_DETERMINISM_FLAG}".strip()
        elif jax.default_backend() != "cpu":  # XLA on a CPU is deterministic anyway.
            raise RuntimeError("JAX started its GPU before seed_everything could ask XLA for "
                               "deterministic kernels; call it before any JAX computation")
    elif name() == "torch":
        import torch

        # cuBLAS is deterministic only with a fixed workspace; it reads this when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def loss_and_gradient(model: keras.Model, non_trainable: list, images, labels) -> LossAndGradient:
    """L(weights) on one mini-batch and its gradient, computed statelessly: BN in training mode, as
    the optimized loss is, but its moving statistics, the dropout RNG and the weights are never
    written (Keras' `stateless_call` returns the new state, which is dropped). `non_trainable` are
    the values of model.non_trainable_variables (BN statistics, RNG state) to compute with."""

    def loss(weights):
        predictions, _ = model.stateless_call(weights, non_trainable, images, training=True)
        return model.loss(labels, predictions)

    if name() == "jax":
        import jax

        return jax.value_and_grad(loss)
    if name() == "torch":
        import torch

        # Keras' unseeded Dropout draws its masks from PyTorch's global generator, not from the
        # state that stateless_call passes: give every evaluation the same masks, from a forked
        # generator, so the measurement is of one loss and training's random stream is untouched.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            mask_seed = int(torch.randint(2**31 - 1, ()))

        def torch_loss_and_gradient(weights):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(mask_seed)
                weights = [weight.detach().requires_grad_(True) for weight in weights]
                value = loss(weights)
                return value.detach(), list(torch.autograd.grad(value, weights))

        return torch_loss_and_gradient
    import tensorflow as tf

    def tensorflow_loss_and_gradient(weights):
        with tf.GradientTape() as tape:
            tape.watch(weights)
            value = loss(weights)
        return value, tape.gradient(value, weights)

    return tensorflow_loss_and_gradient


def compile_function(function: Callable) -> Callable:
    """`function` traced once and compiled: a tf.function graph or a jax.jit program. PyTorch runs
    it eagerly (torch.compile would add minutes of compilation for a probe that runs 40 times)."""
    if name() == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if name() == "jax":
        import jax

        return jax.jit(function)
    return function
