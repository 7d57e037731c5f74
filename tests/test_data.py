import gzip
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset, prepare_data
from cnnlab.data.augment import crop_at, cutout, random_flip, random_translate
from cnnlab.data.idx import read_idx
from cnnlab.data.shapes import make_shapes
from cnnlab.errors import CnnlabError
from conftest import write_cifar_bin, write_idx


def test_digits_is_embedded_and_real():
    splits = load_dataset("digits")
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.train.image_shape == (1, 8, 8) and splits.train.num_classes == 10
    assert not splits.train.flip_ok  # a flipped 2 is not a 2


def test_cifar_binary_reader(cifar10_dir):
    data_dir, images, labels = cifar10_dir
    splits = load_dataset("cifar10", data_dir)
    assert len(splits.train) == 20 and len(splits.test) == 4
    assert torch.equal(splits.train.x, torch.from_numpy(images[:20]))
    assert splits.train.y.tolist() == labels[:20].tolist()
    assert splits.train.classes[3] == "cat"


def test_cifar100_binary_reader_takes_the_fine_label(tmp_path, rng):
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 42, 99, 7, 63])
    write_cifar_bin(folder / "train.bin", images, labels, coarse=True)
    write_cifar_bin(folder / "test.bin", images[:2], labels[:2], coarse=True)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.train.y.tolist() == labels.tolist() and splits.train.num_classes == 100


def test_corrupt_cifar_file_is_a_clear_error(cifar10_dir):
    data_dir, _, _ = cifar10_dir
    f = data_dir / "cifar10" / "cifar-10-batches-bin" / "data_batch_2.bin"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CnnlabError, match="data_batch_2.bin is corrupt.*download"):
        load_dataset("cifar10", data_dir)


def test_missing_dataset_offline_says_what_to_place_where(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(CnnlabError, match=r"place that file at .*cifar-10-binary.tar.gz"):
        load_dataset("cifar10", tmp_path)


def _write_mnist(folder, rng, n=6):
    folder.mkdir(parents=True)
    xtr, ytr = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
    for name, arr in [("train-images-idx3-ubyte.gz", xtr), ("train-labels-idx1-ubyte.gz", ytr),
                      ("t10k-images-idx3-ubyte.gz", xtr[:2]), ("t10k-labels-idx1-ubyte.gz", ytr[:2])]:
        write_idx(folder / name, arr)
    return xtr, ytr


def test_idx_reader_matches_torchvision(tmp_path, rng):
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    arr = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.idx", arr)
    ours = read_idx(tmp_path / "a.idx")
    ref = read_sn3_pascalvincent_tensor(str(tmp_path / "a.idx"))
    assert np.array_equal(ours, ref.numpy()) and np.array_equal(ours, arr)


def test_mnist_from_idx_gz_in_data_dir(tmp_path, rng, monkeypatch):
    import cnnlab.data.idx as idx

    xtr, ytr = _write_mnist(tmp_path / "mnist", rng)
    monkeypatch.setattr(idx, "fetch", lambda url, folder, f, md5, name: folder / f)  # skip MD5
    splits = load_dataset("mnist", tmp_path)
    assert torch.equal(splits.train.x[:, 0], torch.from_numpy(xtr))
    assert splits.train.y.tolist() == ytr.tolist() and splits.test.image_shape == (1, 28, 28)


def test_idx_with_wrong_checksum_is_refused(tmp_path, rng):
    _write_mnist(tmp_path / "mnist", rng)
    with pytest.raises(CnnlabError, match="train-images-idx3-ubyte.gz is corrupt"):
        load_dataset("mnist", tmp_path)


def test_truncated_idx_is_a_clear_error(tmp_path, rng):
    write_idx(tmp_path / "x.idx.gz", rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "x.idx.gz").read_bytes())[:-5]
    (tmp_path / "x.idx.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(CnnlabError, match="truncated or corrupt"):
        read_idx(tmp_path / "x.idx.gz")


def _write_folder(root, rng, per_class=3, size=20):
    for c in ["cat", "dog"]:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png")


def test_image_folder(tmp_path, rng):
    _write_folder(tmp_path / "imgs", rng)
    splits = load_dataset(f"folder:{tmp_path / 'imgs'}", image_size=16)
    assert splits.train.classes == ["cat", "dog"] and splits.test is None
    assert splits.train.image_shape == (3, 16, 16) and splits.train.y.tolist() == [0] * 3 + [1] * 3


def test_image_folder_with_a_non_image_is_a_clear_error(tmp_path, rng):
    _write_folder(tmp_path / "imgs", rng)
    (tmp_path / "imgs" / "cat" / "bad.png").write_text("not an image")
    with pytest.raises(CnnlabError, match="bad.png is not a readable image"):
        load_dataset(f"folder:{tmp_path / 'imgs'}")


def test_the_digits_folds_test_every_image_once_and_fold_0_is_the_plain_split():
    def rows(x):
        return sorted(bytes(r) for r in x.flatten(1).numpy())

    plain = load_dataset("digits")
    everything = rows(torch.cat([plain.train.x, plain.test.x]))
    folds = [load_dataset(f"digits:fold={k}") for k in range(5)]
    assert torch.equal(folds[0].test.x, plain.test.x) and torch.equal(folds[0].train.x, plain.train.x)
    for fold in folds:  # each trains on the other four fifths
        assert rows(torch.cat([fold.train.x, fold.test.x])) == everything
        assert 355 <= len(fold.test) <= 362 and fold.test.y.bincount().min() >= 34  # stratified
    assert rows(torch.cat([f.test.x for f in folds])) == everything  # a partition
    with pytest.raises(CnnlabError, match="digits:fold=5 is not understood"):
        load_dataset("digits:fold=5")


def test_npz_and_its_errors(tmp_path, digits_npz):
    splits = load_dataset(f"npz:{digits_npz}")
    assert len(splits.train) == 1797 and splits.train.image_shape == (1, 8, 8)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(CnnlabError, match="arrays named x and y"):
        load_dataset(f"npz:{tmp_path / 'nolabels.npz'}")
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(3))
    with pytest.raises(CnnlabError, match="one label per image"):
        load_dataset(f"npz:{tmp_path / 'shape.npz'}")
    with pytest.raises(CnnlabError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


def test_unknown_dataset():
    with pytest.raises(CnnlabError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_holdout_split_is_seeded_and_disjoint(digits_npz):
    a = prepare_data(f"npz:{digits_npz}", "", 0, 300, seed=1)
    b = prepare_data(f"npz:{digits_npz}", "", 0, 300, seed=1)
    assert len(a.eval) == 300 and len(a.train) == 1497 and a.eval_split == "val"
    assert torch.equal(a.eval.x, b.eval.x)
    joined = torch.cat([a.train.x.flatten(1), a.eval.x.flatten(1)])
    assert len(joined) == 1797


def test_a_runs_evaluation_images_are_named_eval_whichever_split_they_are(digits_npz):
    """One name for a run's scored images: ``eval``, with ``eval_split`` saying which they are."""
    held_out = prepare_data(f"npz:{digits_npz}", "", 0, 300, seed=1)
    official = load_dataset("digits")
    scored_on_test = prepare_data("digits", "", 0, 0.0, seed=1)
    assert (held_out.eval_split, scored_on_test.eval_split) == ("val", "test")
    assert torch.equal(scored_on_test.eval.x, official.test.x)
    assert not hasattr(held_out, "val") and not hasattr(official, "val")


def test_shapes_are_seeded_with_boxes_and_masks():
    a, b = make_shapes(20, 32, seed=3), make_shapes(20, 32, seed=3)
    assert torch.equal(a.x, b.x) and a.x.shape == (20, 3, 32, 32)
    boxes, masks = a.extras["boxes"], a.extras["masks"]
    for box, mask in zip(boxes, masks, strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_shapes_take_more_kinds_and_more_images():
    data = load_dataset("shapes:kinds=8,n=400", image_size=16)
    assert data.train.classes[4:] == ["pentagon", "hexagon", "rhombus", "cross"]
    assert (len(data.train), len(data.test)) == (400, 80)
    assert sorted(set(data.train.y.tolist())) == list(range(8))
    # a rhombus is a squashed square: less area at the same size parameter
    shapes = make_shapes(300, 24, seed=0, kinds=8)
    area = shapes.extras["masks"].flatten(1).sum(1).float()
    ratio = area[shapes.y == 6].mean() / area[shapes.y == 1].mean()
    assert 0.45 < ratio < 0.75  # 0.6 / 1.0 of the square's half-diagonals
    more = load_dataset("shapes:kinds=8,n=400,test=120", image_size=16)
    assert (len(more.train), len(more.test)) == (400, 120)
    assert torch.equal(more.train.x, data.train.x)  # the same training images


@pytest.mark.parametrize("arg, message", [
    ("kinds=9", "kinds must lie in [4, 8], got 9"),
    ("kind=8", "shapes:kind=8 is not understood"),
    ("n=-5", "n must be >= 0"),
    ("test=-1", "test must be >= 0"),
    ("bias=x", "shapes:bias=x is not understood")])
def test_bad_shapes_arguments_get_one_clear_line(arg, message):
    with pytest.raises(CnnlabError, match=re.escape(message)):
        load_dataset(f"shapes:{arg}")


def test_colour_bias_ties_classes_to_hues():
    biased = make_shapes(200, 16, seed=0, color_bias=1.0)
    fg = [biased.x[i].float().permute(1, 2, 0)[biased.extras["masks"][i]].mean(0)
          for i in range(200)]
    circles = torch.stack([f for f, y in zip(fg, biased.y, strict=True) if y == 0])
    assert circles.std(0).max() < 25  # one hue (red) for every circle


def test_augmentations_keep_shape_and_are_seeded():
    x = torch.rand(8, 3, 12, 12)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(random_translate(x, 0, g()), x)
    t = random_translate(x, 2, g())
    assert t.shape == x.shape and torch.equal(t, random_translate(x, 2, g()))
    f = random_flip(x, g())
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1)) for i in range(8))
    c = cutout(x, 4, g())
    assert ((c == 0).flatten(1).sum(1) > 0).all()


def test_limit_train_and_sample_are_random_on_a_class_sorted_file(tmp_path):
    y = np.repeat(np.arange(4), 50)  # sorted by class, like the CIFAR copy in shared/
    np.savez(tmp_path / "sorted.npz", x=np.zeros((200, 4, 4), np.uint8), y=y)
    data = prepare_data(f"npz:{tmp_path / 'sorted.npz'}", "", 0, 40, seed=0, limit_train=60)
    assert len(data.train) == 60 and min(data.train.class_counts()) > 5
    assert min(data.eval.sample(20, seed=0).class_counts()) >= 1
    assert torch.equal(data.eval.sample(20, seed=3).y, data.eval.sample(20, seed=3).y)


def test_translate_output_is_a_crop_of_the_padded_image():
    x = torch.rand(16, 3, 10, 10)
    out = random_translate(x, 2, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(16):
        crops = [padded[i, :, dy: dy + 10, dx: dx + 10] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) for c in crops)


def test_gather_crop_used_on_gpus_equals_the_slice_crop_used_on_cpus():
    x = torch.rand(32, 3, 10, 12)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    shifts = torch.randint(0, 25, (32,), generator=torch.Generator().manual_seed(4))
    gathered = crop_at(padded, shifts // 5, shifts % 5, 10, 12)
    sliced = torch.stack([padded[i, :, s // 5: s // 5 + 10, s % 5: s % 5 + 12]
                          for i, s in enumerate(shifts.tolist())])
    assert torch.equal(gathered, sliced)
    assert torch.equal(random_translate(x, 2, torch.Generator().manual_seed(4)), sliced)


def test_cutout_erases_exactly_a_size_by_size_square():
    x = torch.ones(50, 1, 32, 32)
    for size in (1, 4, 8, 9):
        out = cutout(x, size, torch.Generator().manual_seed(size))
        erased = (out == 0).flatten(1).sum(1)
        assert erased.max() == size * size  # squares inside the image lose size^2 pixels
        assert (erased <= size * size).all() and (erased > 0).all()


def test_the_validation_split_does_not_move_with_the_training_seed(digits_npz):
    from cnnlab.config import TrainConfig
    from cnnlab.data import data_for

    a = data_for(TrainConfig(dataset=f"npz:{digits_npz}", val_split=300, seed=0))
    b = data_for(TrainConfig(dataset=f"npz:{digits_npz}", val_split=300, seed=7))
    c = data_for(TrainConfig(dataset=f"npz:{digits_npz}", val_split=300, seed=0, val_seed=1))
    assert torch.equal(a.eval.x, b.eval.x) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.eval.x, c.eval.x)


def test_images_read_from_files_are_writable_so_torch_does_not_warn(tmp_path):
    """Issue: torch's non-writable-array warning in `explain filters --image` and the serve log."""
    import warnings

    from PIL import Image

    from cnnlab.data.files import read_image

    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "x.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.from_numpy(read_image(tmp_path / "x.png", 8, "RGB")).shape == (8, 8, 3)


def test_an_enlarged_image_shrinks_back_to_its_own_pixels_and_others_resize_bilinearly(tmp_path):
    """A digit saved at 16x (each pixel a 16x16 block) was read back blurred by the bilinear
    filter; whole-number multiples now shrink by block means, so it reads as the digit it was."""
    from cnnlab.data.files import read_image

    digit = load_dataset("digits").test.x[0, 0].numpy()  # (8, 8) uint8
    for factor in (2, 3, 16):
        big = Image.fromarray(digit).resize((8 * factor, 8 * factor), Image.Resampling.NEAREST)
        big.save(tmp_path / f"x{factor}.png")
        assert np.array_equal(read_image(tmp_path / f"x{factor}.png", 8, "L")[..., 0], digit)
    odd = Image.fromarray(digit).resize((20, 20), Image.Resampling.NEAREST)  # 2.5x: not whole
    odd.save(tmp_path / "odd.png")
    expected = np.asarray(odd.resize((8, 8), Image.Resampling.BILINEAR))
    assert np.array_equal(read_image(tmp_path / "odd.png", 8, "L")[..., 0], expected)
    assert not np.array_equal(expected, digit)  # the bilinear path does blur: the check can fail


def test_a_folder_that_mixes_grey_and_colour_is_colour_and_says_so(tmp_path):
    """Issue: the first image's mode decided for all, so one greyscale file first turned every
    colour image grey without a word."""
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "0.png")  # first: grey
    Image.fromarray(np.full((8, 8, 3), (200, 10, 10), np.uint8)).save(tmp_path / "b" / "1.png")
    splits = load_dataset(f"folder:{tmp_path}", "", 8)
    assert splits.train.x.shape[1] == 3 and "1 greyscale images converted to RGB" in splits.source
    assert splits.train.x[1, 0].float().mean() > 150  # the red image kept its colour


def test_the_data_card_flags_thin_classes_and_imbalance(tmp_path):
    import cnnlab

    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 30 + [2] * 6)
    path = tmp_path / "skewed.npz"
    np.savez(path, x=rng.integers(0, 256, (len(y), 8, 8), dtype=np.uint8), y=y,
             x_test=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_test=np.arange(30) % 3,
             classes=np.array(["many", "some", "few"]))
    run = cnnlab.train(cnnlab.TrainConfig(dataset=f"npz:{path}", model="mlp", epochs=1,
                                          out_dir=str(tmp_path), name="s"), log=lambda line: None)
    assert run.metrics["train_per_class"] == [60, 30, 6]
    html = (run.path / "report.html").read_text()
    assert "Small-data checks" in html and "few (6)" in html and "10.0x (60 / 6 images)" in html
    assert "start from trained weights" in html and "96 training images in all" in html


def test_a_folder_of_images_smaller_than_the_chosen_size_says_so(tmp_path):
    from PIL import Image

    for c, side in (("a", 12), ("b", 40)):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (side, side + 4), (i * 40, 9, 9)).save(tmp_path / c / f"{i}.png")
    splits = load_dataset(f"folder:{tmp_path}", image_size=32)
    assert "3 of 6 training images smaller than 32x32, enlarged (the smallest 12x16)" in splits.source
    assert "smaller than" not in load_dataset(f"folder:{tmp_path}", image_size=12).source


def test_sixteen_bit_grey_and_rotated_photos_are_read_as_they_look(tmp_path):
    """Found by probing: a 16-bit grey PNG (0-65535) read as almost pure white (PIL's convert
    clips at 255), and a photo with EXIF orientation 6 was read on its side."""
    from cnnlab.data.files import read_image

    ramp = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1040).astype(np.uint16)  # up to 65,520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    grey = read_image(tmp_path / "deep.png", None, "L").squeeze()
    assert grey.min() == 0 and grey.max() == 65520 // 257 and len(np.unique(grey)) == 64

    photo = Image.new("RGB", (40, 10), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    photo.save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg", None, "RGB").shape == (40, 10, 3)  # as shown: 10 wide


def test_an_empty_class_folder_is_refused_not_learnt_as_a_class(tmp_path):
    """Found by probing: an empty class folder became a fourth class with no image."""
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="class folder empty holds no images"):
        load_dataset(f"folder:{tmp_path}", image_size=8)
    (tmp_path / "empty").rmdir()
    assert load_dataset(f"folder:{tmp_path}", image_size=8).train.classes == ["a", "b"]


def test_a_folder_run_without_a_test_split_is_evaluated_on_its_hold_out(tmp_path):
    """Found by probing: `cnnlab evaluate` on such a run said "no test split; use --split train",
    and that scored the training images without saying so."""
    import cnnlab

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / c / f"{i}.png")
    run = cnnlab.train(cnnlab.TrainConfig(dataset=f"folder:{tmp_path / 'photos'}", model="mlp", epochs=1,
                                          image_size=8, out_dir=str(tmp_path / "runs"), name="f"),
                       log=lambda s: None, report=False)
    held = run.evaluate()
    assert held["n"] == run.metrics["n"] and held["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert held["warnings"] == []
    assert "not a held-out figure" in run.evaluate(split="train")["warnings"][0]


def test_npz_labels_a_model_cannot_learn_are_refused(tmp_path):
    """Found by probing: y_test in 3..5 against y in 0..2 scored 0% without a word, and y in 5..7
    without class names made 8 classes, 5 of them empty."""
    x = np.zeros((6, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]), x_test=x, y_test=np.arange(6) % 3 + 3)
    with pytest.raises(CnnlabError, match="y_test holds the labels 3, 4, 5 that no training image has"):
        load_dataset(f"npz:{tmp_path / 'a.npz'}")
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(6) % 3 + 5)
    with pytest.raises(CnnlabError, match="no training image has the labels 0, 1, 2, 3, 4"):
        load_dataset(f"npz:{tmp_path / 'b.npz'}")
    names = np.array([f"c{i}" for i in range(8)])
    np.savez(tmp_path / "c.npz", x=x, y=np.arange(6) % 3 + 5, classes=names)  # named: as the user says
    assert load_dataset(f"npz:{tmp_path / 'c.npz'}").train.classes == list(names)


def test_mnist_from_un_gzipped_idx_files_in_data_dir(tmp_path, rng, monkeypatch):
    """Found by probing: the four files already un-gzipped (as many copies hold them) were refused
    with "could not download ...idx3-ubyte.gz"; they are read, checked by their IDX header."""
    import gzip

    import cnnlab.data.idx as idx

    xtr, _ = _write_mnist(tmp_path / "mnist", rng)
    for f in list((tmp_path / "mnist").glob("*.gz")):
        f.with_suffix("").write_bytes(gzip.open(f).read())
        f.unlink()

    def offline(*a, **k):
        raise AssertionError("nothing is downloaded where the files are there")

    monkeypatch.setattr(idx, "fetch", offline)
    splits = load_dataset("mnist", tmp_path)
    assert torch.equal(splits.train.x[:, 0], torch.from_numpy(xtr))
