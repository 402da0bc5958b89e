"""The sweep's and the landscape's figures, drawn from small fake runs: a PNG each, and every
panel that shows data has both axes labelled."""

import numpy as np
import pytest

from stages.analysis import figures, run_figures

STEPS = np.arange(0, 200, 50)


def fake_runs() -> list[dict]:
    runs = []
    for optimizer, rates, variants in (("adam", [1e-3, 1e-2], ["before", "rescaled"]),
                                       ("sgd", [0.1, 1.0], ["before", "none"])):
        for variant in variants:
            layers = ["conv1", "bn1", "dense"] if variant == "before" else ["conv1", "dense"]
            for rate in rates:
                for seed in (0, 1):
                    diverged = optimizer == "sgd" and rate == 1.0 and variant == "none"
                    beta = np.full(len(STEPS), np.nan) if diverged else 10.0 + seed + np.arange(len(STEPS))
                    runs.append({"optimizer": optimizer, "bn": variant, "learning_rate": rate, "seed": seed,
                                 "test_accuracy": 0.1 if diverged else 0.7 + 0.01 * seed, "diverged": diverged,
                                 "effective_step": {layer: None if diverged else rate for layer in layers},
                                 "steps": STEPS, "update_beta": beta})
    return runs


@pytest.fixture
def drawn(monkeypatch):
    """Each figure's (title, xlabel, ylabel) of every panel with data, as it is saved."""
    panels = {}
    real_save = figures.save

    def save(figure, path, **options):
        panels[path.name] = [(axis.get_title(), axis.get_xlabel(), axis.get_ylabel())
                             for axis in figure.axes if axis.axison]
        real_save(figure, path, **options)

    for module in (figures, run_figures):
        monkeypatch.setattr(module, "save", save)
    return panels


@pytest.mark.parametrize("draw, panels", [
    (figures.accuracy_vs_learning_rate, 2),  # One per optimizer.
    (figures.effective_step_vs_learning_rate, 3),  # One per layer: conv1, bn1, dense.
    (figures.update_beta_over_training, 4),  # One per (optimizer, learning rate).
])
def test_sweep_figures_have_a_labelled_panel_each(tmp_path, drawn, draw, panels):
    path = tmp_path / f"{draw.__name__}.png"
    draw(fake_runs(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert len(drawn[path.name]) == panels
    for title, xlabel, ylabel in drawn[path.name]:
        assert title and xlabel and ylabel, (title, xlabel, ylabel)


def test_landscape_bands_label_every_axis(tmp_path, drawn):
    columns = {"step": STEPS, "loss_min": STEPS * 0 + 1.0, "loss_max": STEPS * 0 + 1.2,
               "grad_change_min": STEPS * 0 + 0.5, "grad_change_max": STEPS * 0 + 2.0, "beta": STEPS + 50.0}
    run_figures.landscape_bands({"bn=before": columns}, tmp_path / "landscape.png")
    labels = drawn["landscape.png"]
    assert len(labels) == 3 and all(title and xlabel and ylabel for title, xlabel, ylabel in labels)


def test_the_studys_landscape_is_one_row_per_variant_with_a_legend_each(tmp_path, drawn):
    columns = {"step": STEPS, "loss_min": STEPS * 0 + 1.0, "loss_max": STEPS * 0 + 1.2,
               "grad_change_min": STEPS * 0 + 0.5, "grad_change_max": STEPS * 0 + 2.0, "beta": STEPS + 50.0}
    figures.landscape_by_variant({"before": columns, "none": columns}, tmp_path / "landscape.png")
    titles = [title for title, _, _ in drawn["landscape.png"]]
    assert len(titles) == 6 and sum("bn=none" in title for title in titles) == 3


def test_the_head_figure_counts_diverged_runs_instead_of_drawing_them(tmp_path, drawn):
    runs = [{"bn": bn, "learning_rate": rate, "seed": seed, "test_accuracy": 0.1 if diverged else 0.7,
             "diverged": diverged, "scaled": scaled}
            for bn in ("before", "none") for rate in (0.1, 0.3) for seed in (0, 1) for scaled in (True, False)
            for diverged in [rate == 0.3 and bn == "before" and not scaled]]
    figures.head_intervention(runs, tmp_path / "head.png")
    panels = drawn["head.png"]
    assert [title for title, _, _ in panels] == ["SGD, learning rate 0.1", "SGD, learning rate 0.3"]


def test_every_variant_keeps_its_colour():
    colours = [figures.variant_color(variant) for variant in ("before", "after", "none", "rescaled")]
    assert len(set(colours)) == 4 and figures.variant_color("none") == colours[2]


def test_the_main_runs_confusion_and_per_class_figures_name_the_run(tmp_path, drawn):
    """Compared side by side across `dvc exp run -S bn=...`, each figure says which run it shows."""
    actual = np.arange(10).repeat(3)
    run_figures.confusion_matrix(actual, actual[::-1], tmp_path / "confusion.png", "bn=after, seed 3, 10 epochs")
    run_figures.per_class_accuracy({f"class {k}": 0.5 for k in range(10)}, tmp_path / "per_class.png",
                                   "bn=after, seed 3, 10 epochs")
    for name in ("confusion.png", "per_class.png"):
        title, xlabel, ylabel = drawn[name][0]
        assert title.endswith("bn=after, seed 3, 10 epochs") and xlabel and ylabel, (name, title)
