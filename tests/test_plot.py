import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gmcourse import plot  # noqa: E402
from gmcourse.toy import EightGaussians  # noqa: E402
from gmcourse.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_make_grid_tiles_images_in_place():
    x = torch.zeros(5, 1, 4, 4)
    x[2] = 1.0  # third image white
    grid = plot.make_grid(x, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    assert grid[1:5, 11:15].min() == 1.0 and grid[1:5, 1:5].max() == 0.0
    assert grid[6:10, 11:15].min() == 1.0  # sixth slot is empty padding (white)


def test_make_grid_accepts_uint8_and_rejects_out_of_range_floats():
    assert plot.make_grid(torch.full((2, 28, 28), 255, dtype=torch.uint8)).max() == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot.make_grid(torch.full((2, 1, 8, 8), 3.0))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        plot.make_grid(torch.zeros(2, 5, 8, 8))


def test_every_plot_returns_fig_and_ax_and_saves_only_when_asked(tmp_path):
    d = EightGaussians()
    x = d.sample(100)
    h = History(epoch=[1, 2], metrics={"train_loss": [3.0, 2.0], "val_loss": [3.1, 2.2]}, seconds=[0.1, 0.2])
    results = [
        plot.image_grid(torch.rand(6, 1, 8, 8)),
        plot.scatter_2d(x, label="data"),
        plot.density_2d(d.log_prob, n=30),
        plot.contour_2d({"true": d.log_prob}, n=30),
        plot.loss_curves(h),
    ]
    for fig, ax in results:
        assert isinstance(fig, matplotlib.figure.Figure) and ax is not None
    assert list(tmp_path.iterdir()) == []
    plot.data_vs_samples(x, x, save_as=tmp_path / "pair.png")
    assert (tmp_path / "pair.png").stat().st_size > 0


def test_density_plot_shows_the_density():
    fig, ax = plot.density_2d(EightGaussians().log_prob, n=41)
    image = ax.images[0].get_array()
    assert image.shape == (41, 41) and np.argmax(image) != 20 * 41 + 20  # the centre has no mass


def test_plots_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        plot.scatter_2d(torch.zeros(10, 3))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        plot.density_2d(lambda x: x, n=10)
