"""Decoding every hostile file the way a user needs: upright RGB, or one clear reason."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import draw_shape
from hostile import EXIF_ORIENTATION, make_hostile
from retrieval.errors import NotAnImage
from retrieval.images import BACKGROUND, load_image
from retrieval.walk import find_images


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return make_hostile(tmp_path_factory.mktemp("hostile"))


def test_each_hostile_file_loads_upright_rgb_or_gives_its_reason(hostile):
    for case, (path, expected) in hostile.items():
        if expected == "ok":
            img = load_image(path)
            assert img.mode == "RGB" and min(img.size) >= 1, case
        else:
            with pytest.raises(NotAnImage) as e:
                load_image(path)
            assert e.value.reason.startswith(expected), (case, e.value.reason)
            assert str(e.value).startswith(str(path)) and "\n" not in e.value.reason


def test_find_images_finds_every_case_by_content_and_skips_the_rest(hostile, tmp_path):
    folder = next(iter(hostile.values()))[0].parent
    (folder / "readme.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(b"")
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "t.jpg").write_bytes(b"")
    found = set(find_images([folder]))
    assert found == {path for path, _ in hostile.values()}


def test_find_images_skips_the_excluded_folder_and_takes_files(tmp_path):
    draw_shape(0).save(tmp_path / "a.png")
    (tmp_path / "index").mkdir()
    draw_shape(1).save(tmp_path / "index" / "b.png")
    assert list(find_images([tmp_path], exclude=[tmp_path / "index"])) == [tmp_path / "a.png"]
    assert list(find_images([tmp_path / "a.png"])) == [tmp_path / "a.png"]


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_gives_the_upright_pixels(orientation):
    upright = draw_shape(2, size=64, seed=1).crop((0, 0, 64, 48))  # not square: rotation shows
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6
                               else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())  # lossless, so equality is exact
    assert np.array_equal(np.asarray(load_image(buf)), np.asarray(upright))


def test_transparent_pixels_are_composited_on_the_fixed_background():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    decoded = load_image(buf)
    assert decoded.getpixel((0, 0)) == BACKGROUND and decoded.getpixel((1, 1)) == (255, 0, 0)


def test_sixteen_bit_grey_keeps_its_range():
    img = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert load_image(buf).getpixel((0, 0)) == (156, 156, 156)  # 40000 / 256


def test_jpeg_draft_mode_decodes_large_photos_smaller(tmp_path):
    path = tmp_path / "big.jpg"
    draw_shape(0, size=96).resize((1600, 1200)).save(path, quality=90)
    small = load_image(path, draft_size=256)
    assert small.size == (400, 300)  # scaled by 1/4 in the DCT, shorter side still >= 256
    assert load_image(path).size == (1600, 1200)


def test_pixel_vectors_are_small_flat_squares_and_skip_bad_files(tmp_path):
    from retrieval.pixels import pixel_vectors

    Image.new("RGB", (30, 20), (255, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    xb, ok, errors = pixel_vectors([tmp_path / "red.png", tmp_path / "bad.jpg"], size=4)
    assert xb.shape == (1, 48) and xb.dtype == np.float32 and xb.flags.c_contiguous
    assert np.allclose(xb[0].reshape(4, 4, 3), [1, 0, 0])
    assert ok == [0] and errors == [(str(tmp_path / "bad.jpg"), "not an image")]
