"""Train one BN variant and describe the run: what `train` and the study's `cell` stage share.

Both pipelines train through `train_variant`, so a study cell and the main run with the same
params and seed are the same computation (a test in tests/test_training.py checks this).
"""

from __future__ import annotations

import dataclasses

import keras

from stages.trainer.cifar import Split
from stages.trainer.landscape import LandscapeProbe
from stages.trainer import provenance
from stages.trainer.model import build_model, initialize, scale_head_input, variant_callbacks
from stages.trainer.params import LandscapeParams, ModelParams, TrainParams
from stages.trainer.backend import seed_everything
from stages.trainer.device import configure_device, environment
from stages.trainer.training import batch_indices, epoch_orders, fit


def train_variant(model_params: ModelParams, train_params: TrainParams, bn: str, seed: int,
                  statistics: dict, train: Split, validation: Split,
                  landscape: LandscapeParams | None, live, weight_norms: bool = False,
                  entry: str = "train") -> tuple[keras.Model, dict, LandscapeProbe | None]:
    """Seed, build, fit; return the model, the run record and the landscape probe (None if off;
    with `weight_norms`, it records each layer's weight norm too).

    The run record holds everything needed to interpret the result later without params.yaml:
    the settings used, per-epoch history, timings and the numerics (backend, device, precision,
    TF32, oneDNN), and why `train.device: auto` fell back to the CPU, if it did; and, from record
    schema 2 on, the digests of the code (`entry`: the stage module, stages/<entry>.py) and data
    that made it, and the numerics fingerprint (provenance.py); the stage adds its data's digests.
    """
    seed_everything(seed, train_params.deterministic)
    device_fallback = configure_device(train_params.device, train_params.tf32)
    model = build_model(model_params, bn, statistics, train_params.precision)
    numerics = environment(train_params.precision)
    print(f"train: bn={bn} seed={seed} params={model.count_params():,} "
          f"precision={train_params.precision} backend={numerics['backend']} "
          f"tf32={numerics['tf32']} on {numerics['device']}", flush=True)
    orders = epoch_orders(len(train.labels), train_params.epochs, seed)
    # A data-dependent initialization (bn=rescaled) uses the first training batch, in epoch order.
    initialization = initialize(bn, model, init_batch(train, orders, train_params))
    for layer, moments in (initialization or {}).items():
        print(f"train: {layer} channels on the first batch: std {moments['std_min_before']:.3g} to "
              f"{moments['std_max_before']:.3g} -> {moments['std_min_after']:.6f} to "
              f"{moments['std_max_after']:.6f}, largest |mean| {moments['largest_abs_mean_before']:.3g} "
              f"-> {moments['largest_abs_mean_after']:.2g}", flush=True)
    # The head's input scale (model.head_input_rms), after any rescaling of the convolutions.
    head_input = scale_head_input(model, init_batch(train, orders, train_params),
                                  model_params.head_input_rms) if model_params.head_input_rms else None
    if head_input:
        print(f"train: head input RMS on the first batch {head_input['rms_before']:.4g} -> "
              f"{head_input['target_rms']:g} (scale {head_input['scale']:.4g})", flush=True)
    probe = LandscapeProbe(train, orders, landscape, train_params, weight_norms) if landscape else None
    # The variant's own callbacks first, so that the probe measures the step they prepared.
    during = variant_callbacks(model_params, bn, train.images)
    timings, history = fit(model, train, validation, train_params, orders, live,
                           during + ([probe] if probe else []))
    # After training, so that it draws nothing from the run's random streams.
    numerics["numerics_fingerprint"] = provenance.numerics_fingerprint(model_params, statistics,
                                                                       train_params.precision)
    code_files = provenance.code_files(bn, entry)
    record = {"schema": provenance.SCHEMA, "bn": bn, "seed": seed, "model": dataclasses.asdict(model_params),
              "train": dataclasses.asdict(train_params),
              "initialization": initialization, "landscape": probe.summary() if probe else None,
              **timings, "probe_seconds": round(probe.seconds, 3) if probe else 0.0,
              "history": history, "environment": numerics,
              "device_fallback": device_fallback, "code": provenance.code(bn, entry),
              "git": provenance.git_state(code_files)}
    if head_input:  # Only then: records of runs without the intervention keep their keys.
        record["head_input"] = head_input
    for callback in during:  # What they found (bn=frozen: the statistics it froze).
        record[callback.record_key] = callback.summary
    return model, record, probe


def init_batch(train: Split, orders, train_params: TrainParams):
    """The pixels of the first training step's mini-batch: what a data-dependent init sees."""
    return train.images[batch_indices(orders, 0, train_params.batch_size)]
