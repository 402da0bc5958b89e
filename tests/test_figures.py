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
    figures.landscape_by_variant({"before": columns, "none": columns}, tmp_path / "landscape.png",
                                 "10 epochs, batch 250, Adam 0.001, float32")
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


@pytest.fixture
def kept(monkeypatch):
    """Each figure object as it is saved, by file name: its lines, legends, texts and titles."""
    figures_saved = {}
    real_save = figures.save

    def save(figure, path, **options):
        figures_saved[path.name] = figure
        real_save(figure, path, **options)

    for module in (figures, run_figures):
        monkeypatch.setattr(module, "save", save)
    return figures_saved


def legend_texts(axis) -> list[str]:
    legend = axis.get_legend()
    return [text.get_text() for text in legend.get_texts()] if legend else []


def test_the_study_curves_name_the_setting_and_average_trained_runs_only(tmp_path, kept):
    """A diverged run (its training loss rising) is counted in the legend, never in the mean line."""
    def history(accuracy, rising=False):
        loss = np.array([2.0, 2.5, 3.0]) if rising else np.array([2.0, 1.5, 1.0])
        return {"fit/loss": loss, "val/accuracy": np.full(3, accuracy), "val/loss": loss}

    histories = {"before": [history(0.7), history(0.8), history(0.1, rising=True)], "none": [history(0.6)]}
    figures.study_curves(histories, tmp_path / "curves.png", "10 epochs, batch 250, Adam 0.001, float32")
    figure = kept["curves.png"]
    assert "Adam 0.001" in figure._suptitle.get_text()
    accuracy = figure.axes[0]
    assert accuracy.get_title() == "Validation accuracy (test split) per epoch"
    assert legend_texts(accuracy) == ["bn=before (2 seeds, 1 of 3 diverged)", "bn=none (1 seeds)"]
    before_line = accuracy.get_lines()[0]
    np.testing.assert_allclose(before_line.get_ydata(), 0.75)  # (0.7 + 0.8) / 2: the diverged 0.1 left out.


def test_every_weight_norm_panel_names_its_optimizer_and_has_a_legend(tmp_path, kept):
    steps = np.arange(3)
    runs = [{"bn": bn, "learning_rate": rate, "seed": 35, "diverged": False, "step": steps,
             "conv_norm": np.ones(3), "conv_effective_step": np.ones(3) * 0.01}
            for bn in ("before", "none") for rate in (1e-3, 1e-2)]
    figures.weight_norms(runs, tmp_path / "weight_norms.png", "adam")
    axes = kept["weight_norms.png"].axes
    assert [axis.get_title() for axis in axes] == ["Kernel norm, Adam 0.001", "Effective step, Adam 0.001",
                                                   "Kernel norm, Adam 0.01", "Effective step, Adam 0.01"]
    assert all(legend_texts(axis) == ["bn=before (n=1)", "bn=none (n=1)"] for axis in axes)


def test_the_sweep_line_is_the_mean_of_the_runs_that_trained(tmp_path, kept):
    runs = [run for run in fake_runs() if run["optimizer"] == "sgd"]
    for run in runs:  # At SGD 0.1, `none` seed 1 diverges: its chance-level score is drawn, not averaged.
        if run["bn"] == "none" and run["learning_rate"] == 0.1 and run["seed"] == 1:
            run.update(diverged=True, test_accuracy=0.1)
    figures.accuracy_vs_learning_rate(runs, tmp_path / "sweep.png")
    axis = kept["sweep.png"].axes[0]
    assert axis.get_title() == "sgd: dots = seeds, line = mean over the seeds that trained"
    none_line = next(line for line in axis.get_lines() if line.get_label() == "bn=none")
    assert none_line.get_ydata()[0] == pytest.approx(0.70)  # Seed 0 only; seed 1's 0.1 is a cross.
    assert np.isnan(none_line.get_ydata()[1])  # Every run at 1.0 diverged: no mean, a gap.


def test_the_head_figure_names_the_arm_of_each_diverged_count_and_draws_no_diverged_score(tmp_path, kept):
    runs = [{"bn": bn, "learning_rate": 0.3, "seed": seed, "test_accuracy": 0.1 if not scaled and bn == "before" else 0.7,
             "diverged": not scaled and bn == "before", "scaled": scaled}
            for bn in ("before", "none") for seed in (0, 1) for scaled in (True, False)]
    figures.head_intervention(runs, tmp_path / "head.png")
    axis = kept["head.png"].axes[0]
    assert [text.get_text() for text in axis.texts] == ["as is:\n2 of 2\ndiverged"]
    drawn_scores = np.concatenate([collection.get_offsets()[:, 1] for collection in axis.collections])
    assert 0.1 not in drawn_scores and len(drawn_scores) == 6  # 2 seeds x 3 arms that trained.


def test_the_main_runs_curves_name_the_run_and_its_training(tmp_path, kept):
    history = {f"{split}/{metric}": np.linspace(1, 0.5, 3) for split in ("fit", "val") for metric in ("loss", "accuracy")}
    run_figures.training_curves(history, tmp_path / "curves.png", "bn=after, seed 3, 10 epochs, Adam 0.001, batch 250")
    figure = kept["curves.png"]
    assert figure._suptitle.get_text() == "bn=after, seed 3, 10 epochs, Adam 0.001, batch 250"
    assert [axis.get_title() for axis in figure.axes] == ["Loss per epoch", "Accuracy per epoch"]


def test_the_map_draws_bns_gain_only_from_three_pairs(tmp_path, kept):
    """Below three pairs the table says "not tested", so the figure draws no interval for it either."""
    def gain(pairs):
        return {"pairs": pairs, "mean": 0.02, "ci_low": 0.01, "ci_high": 0.03}

    placement = {"look": 1, "pairs": 10, "mean": 0.01, "sd": 0.005, "low": 0.002, "high": 0.018, "verdict": "detected"}
    summary = {"design": {"equivalence_margin": 0.005},
               "reference": {"placement": {"pairs": 35, "mean": 0.006, "ci_low": 0.004, "ci_high": 0.008},
                             "gain": {"before_vs_none": gain(5), "after_vs_none": gain(5)}},
               "settings": {"relu": {"placement": placement, "gain": {"before_vs_none": gain(2), "after_vs_none": gain(3)}}}}
    figures.placement_map(summary, tmp_path / "map.png")
    gain_axis = kept["map.png"].axes[1]
    drawn_rows = sorted(round(float(line.get_ydata()[0])) for line in gain_axis.lines if line.get_marker() == "o")
    assert drawn_rows == [0, 0, 1]  # The reference's two gains, and relu's after − none (3 pairs) only.
