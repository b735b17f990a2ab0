"""``parakit.controller.verdicts.mismatch``: the cause a student reads when a returned array is
wrong.

Pure unit tests on small arrays: each case builds the mistake a student makes and checks the
fragment of the message that names it (and, for the fallback, that nothing is guessed).
"""

from __future__ import annotations

import numpy as np
import pytest

from parakit.controller.verdicts.mismatch import explain_array, ranges


def mandelbrot(h: int = 37, w: int = 64, maxit: int = 80, shift: float = 0.0) -> np.ndarray:
    """Iteration counts like the serial image (int32), on a small off-centre grid."""
    y, x = np.mgrid[-1.1:0.9:h * 1j, -1.6:0.6:w * 1j]
    c = x + shift + 1j * (y + shift)
    z, counts = np.zeros_like(c), np.zeros(c.shape, dtype=np.int32)
    for _ in range(maxit):
        inside = np.abs(z) <= 2
        z[inside] = z[inside] ** 2 + c[inside]
        counts += inside
    return counts


def product(m: int = 10, n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 5)) @ rng.standard_normal((5, n))


IMAGE = mandelbrot()


class Subclass(np.ndarray):
    """An ndarray subclass, as a student's library might return."""


def image(value, expected=IMAGE, workers=4, **kw):
    return explain_array(value, expected, what="image", workers=workers, exact=True, **kw)


def prod(value, expected, workers=3, **kw):
    return explain_array(value, expected, what="product", workers=workers, exact=False, **kw)


def test_ranges():
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert ranges(range(0, 40, 2)).endswith(", ...")


def test_equal_arrays_give_none():
    p = product()
    assert image(IMAGE.copy()) is None
    assert image(IMAGE.astype(np.int64)) is None
    assert image(IMAGE.astype(np.float64)) is None  # integral floats count as equal
    assert prod(p + 1e-12, p) is None


def test_none():
    message = image(None)
    assert message.startswith("returned None (expected the 37x64 image); "
                              "return the result on rank 0 / in the calling process")


@pytest.mark.parametrize("value, name", [({"a": 1}, "a dict"), ("image", "a str"),
                                         (3, "an int"), (object(), "an object"),
                                         (IMAGE.tolist(), "a list")])
def test_other_objects_name_their_type(value, name):
    # from a graded call only None, str, numbers, dicts and arrays arrive (parakit.wire)
    message = image(value)
    assert message == f"returned {name}, expected a numpy array"


def test_transposed_product():
    p = product()
    assert prod(p.T, p) == ("product has shape (6, 10), expected (10, 6): "
                            "it is the transpose of the expected product")
    square = product(6, 6)
    assert prod(square.T, square).startswith("product is the transpose of the expected product")


def test_flat_array():
    assert image(IMAGE.ravel()) == ("image has shape (2368,), expected (37, 64): "
                                    "its entries are right, reshape it to 37x64")


def test_rows_of_one_worker():
    p = product()  # 10 rows, 3 workers: array_split blocks 0-3, 4-6, 7-9
    assert prod(p[4:7], p) == ("product has shape (3, 6), expected (10, 6): it holds only rows "
                               "4-6 of the expected product (the block of worker 1 of 3): every "
                               "worker's rows must reach the result")  # words of every backend
    assert prod(p[2:5], p).endswith("it holds only rows 2-4 of the expected product")


def test_a_result_short_of_the_remainder_names_it():
    # a pool (or any backend) that splits 10 rows into 3 blocks of 3 and drops the last row
    p = product()
    assert prod(p[:9], p) == ("product has shape (9, 6), expected (10, 6): it holds only rows "
                              "0-8 of the expected product; the last 1 row, the remainder of 10 "
                              "rows split into 3 blocks (10 % 3 = 1), is missing: give the "
                              "remainder to some worker")


def test_nan_entries():
    p = product()
    value = p.copy()
    value[2, 3] = value[5, 0] = np.nan
    message = prod(value, p)
    assert message.startswith("2 entries are NaN (rows 2, 5); ")
    assert "hold no result" not in message


def test_float32_product():
    p = product()
    message = prod(p.astype(np.float32), p)
    assert message.startswith("product has dtype float32, expected float64 (the values agree "
                              "to about ")
    assert "digits: the computation ran in lower precision)" in message
    assert "values are right" in prod(np.round(p).astype(np.int64), np.round(p))


def test_image_with_non_integer_entries():
    value = IMAGE.astype(np.float64)
    value[3, 4] += 0.5
    message = image(value)
    assert message.startswith("the image has dtype float64 with non-integer entries; expected "
                              "the integer iteration counts from compute_rows")
    assert "1 entries are not whole numbers (rows 3)" in message


def test_remainder_rows_hold_no_result():
    expected = mandelbrot(h=11)
    value = expected.copy()
    value[8:] = 0  # 11 rows, 4 workers, floor blocks of 2: rows 8-10 are the remainder
    assert image(value, expected, workers=np.int64(4)) == (
        "3 of 11 rows hold no result (rows 8-10: all zero): the last 3 rows, the remainder "
        "of 11 rows split into 4 blocks (11 % 4 = 3); give the remainder to some worker")


def test_block_of_one_worker_holds_no_result():
    expected = mandelbrot(h=11)
    value = expected.copy()
    value[3:6] = 0  # array_split: 0-2, 3-5, 6-8, 9-10
    assert image(value, expected, workers=4) == (
        "3 of 11 rows hold no result (rows 3-5: all zero): exactly the block of worker 1 of 4; "
        "does that worker get its input, and do its rows reach rank 0 / the caller?")


def test_rows_both_the_remainder_and_a_block_say_both():
    expected = mandelbrot(h=3)
    value = expected.copy()
    value[2] = 0  # 3 rows on 2 workers: the floor split's remainder, array_split's block 1
    message = image(value, expected, workers=2)
    assert "the remainder of 3 rows split into 2 blocks (3 % 2 = 1), and the block of worker 1 " \
        "of 2; is the remainder given to a worker, does that worker get its input" in message


def test_no_row_written():
    assert image(np.zeros_like(IMAGE)).endswith(": no row holds a result")
    assert image(np.full_like(IMAGE, -1)) == (
        "37 of 37 rows hold no result (rows 0-36: all -1): no row holds a result")


def test_uninitialised_memory():
    p = product()
    value = p.copy()
    value[7:] = np.array([6.9e-310, np.nan, 0.0, 1e300, -4e-320, 0.0])
    message = prod(value, p)
    assert "3 of 10 rows hold no result (rows 7-9: uninitialised memory)" in message
    assert "the block of worker 2 of 3" in message


def test_rows_of_other_values_are_not_called_empty():
    p = product()
    for fill in (7.0, 1e-3, -1.0):
        value = p.copy()
        value[7:] = fill
        message = prod(value, p)
        assert "hold no result" not in message
        assert "3 of 10 rows differ from the expected product (rows 7-9; " in message
        assert message.splitlines()[0].endswith(  # where they are, without saying why
            "): exactly the block of worker 2 of 3; does that worker get its input, and do its "
            "rows reach rank 0 / the caller?")
    value = p.copy()
    value[7:] = np.random.default_rng(1).standard_normal((3, 6))
    assert "hold no result" not in prod(value, p)


def test_rows_shifted():
    p = product()
    value = np.zeros_like(p)
    value[1:] = p[:-1]
    message = prod(value, p)
    assert message.startswith("rows are shifted: row 1 holds row 0's values (9 rows off by -1)")
    assert "row 0, at the edge, differs too" in message
    assert prod(np.roll(p, 2, axis=0), p).startswith(
        "rows are shifted: row 2 holds row 0's values (8 rows off by -2)")


def test_blocks_swapped():
    p = product()  # array_split at 3 workers: 0-3, 4-6, 7-9
    value = np.concatenate([p[4:7], p[0:4], p[7:10]])
    assert prod(value, p) == (
        "the blocks are in the wrong order: rows 0-2 hold the block of worker 1 (rows 4-6); "
        "put each block at its own rows (gather in rank order, or by the block's start)")


def test_rows_at_the_wrong_index():
    p = product(m=20)
    order = np.random.default_rng(3).permutation(20)
    message = prod(p[order], p, workers=4)
    assert message.startswith("rows are at the wrong index: row ")
    assert "rows misplaced)" in message


def test_image_slightly_off():
    value = IMAGE.copy()
    value[[5, 9, 20], 10:13] += 1
    message = image(value)
    assert message.startswith("9 pixels in 3 rows differ slightly from the serial image "
                              "(largest difference 1 iteration); were the inputs rounded? "
                              "compute with the spec's float64 values")


def test_product_slightly_off():
    p = product()
    value = p * (1 + 1e-6 * np.random.default_rng(2).standard_normal(p.shape))
    message = prod(value, p)
    assert "differ slightly (largest relative difference " in message
    assert "were the inputs rounded or converted? compute in float64 with the given A and B" \
        in message


def test_mixture_gives_no_guess():
    p = product(m=12)
    value = p.copy()
    value[0] = 0  # no result
    value[3] = p[8]  # another row's values
    value[6] = p[6] * 3  # wrong otherwise
    value[9, 2] += 1e-7  # slightly off
    message = prod(value, p, workers=4)
    assert message.startswith("4 of 12 rows differ from the expected product (rows 0, 3, 6, 9; "
                              "largest difference ")
    for guess in ("rounded", "shifted", "hold no result", "wrong order", "wrong index",
                  "block of worker"):
        assert guess not in message
    assert message.splitlines()[1:] == [
        "  19 of 72 entries differ", "  1 rows are zero or garbage, 1 rows hold other rows' "
        "values, 1 rows differ slightly, 1 rows differ otherwise"]


def test_picture(tmp_path):
    value = IMAGE.copy()
    value[30:] = 0
    path = tmp_path / "sub" / "image.png"
    message = image(value, picture=path)
    assert message.endswith(f"\npicture: {path}")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [f.name for f in path.parent.iterdir()] == ["image.png"]  # no partial file left
    red = _red_rows(path)  # the difference shows the rows left zero: 30-36 of 37, at the bottom
    assert len(red) and red.min() > 0.6, red
    p = product()
    assert prod(p + 1, p, picture=tmp_path / "p.png").endswith(f"picture: {tmp_path / 'p.png'}")


def test_no_picture_for_wrong_shape_or_when_drawing_fails(tmp_path):
    path = tmp_path / "image.png"
    assert "picture" not in image(IMAGE[:5], picture=path)
    assert "picture" not in image(IMAGE.tolist(), picture=path)
    assert not path.exists()
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory should be
    message = image(np.zeros_like(IMAGE), picture=blocked / "image.png")
    assert message.endswith("no row holds a result")


@pytest.mark.parametrize("value", [
    np.array(3), np.zeros((2, 37, 64)), np.zeros((0, 64)), np.zeros(0),
    np.empty((37, 64), dtype=object), np.full((37, 64), "x"), IMAGE.astype(complex),
    IMAGE > 3, list(range(10**6)), [[1, 2], [3]], [[object()] * 64] * 37, np.zeros((37, 64, 0)),
    np.ma.masked_array(IMAGE + 1), (IMAGE + 1).view(Subclass), IMAGE.astype(np.uint8) + 1,
    np.full(IMAGE.shape, np.inf), np.full(IMAGE.shape, -1),
])
def test_garbage_never_raises(value):
    for message in (image(value), prod(value, product(37, 64))):
        assert isinstance(message, str) and message
        assert "not analysed" not in message


def test_garbage_messages_are_clear():
    assert image(np.array(3)) == "image has shape (), expected (37, 64)"
    assert image(np.zeros((0, 64))).endswith(": it is empty")
    assert image(np.empty(IMAGE.shape, dtype=object)).startswith(
        "image has dtype object, expected int32")
    assert image(IMAGE > 3).startswith("image has dtype bool, expected int32")
    assert image(np.zeros((2, 37, 64))) == "image has shape (2, 37, 64), expected (37, 64)"


def _red_rows(path) -> np.ndarray:
    """The rows of the picture where its difference panel (the right third) is red."""
    import matplotlib.image

    pixels = matplotlib.image.imread(path)[..., :3]
    panel = pixels[:, 2 * pixels.shape[1] // 3:]
    red = (panel[..., 0] > 0.6) & (panel[..., 1] < 0.4) & (panel[..., 2] < 0.4)
    return np.flatnonzero(red.any(axis=1)) / len(panel)
