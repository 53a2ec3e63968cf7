"""Reading and writing: modes, metadata (EXIF, ICC, DPI), alpha, 16-bit, EXIF orientation,
through the library and through the command line."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from aetool.cli import app
from aetool.imageio import Picture, encode_image, read_image
from conftest import structured_image

runner = CliRunner()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def denoise_file(src, out, model, *extra):
    r = runner.invoke(app, ["denoise", str(src), "-o", str(out), "--model", str(model), "--sigma", "5", "-q", *extra])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_exif_icc_dpi_survive_the_cli(tmp_path, tiny_model, suffix):
    im = Image.fromarray(structured_image())
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model 1"
    src = tmp_path / f"in{suffix}"
    im.save(src, exif=exif.tobytes(), icc_profile=SRGB, dpi=(300, 300))
    out = denoise_file(src, tmp_path / f"out{suffix}", tiny_model)
    res = Image.open(out)
    assert res.getexif().get(0x010F) == "TestCam"
    assert res.info.get("icc_profile") == SRGB
    if suffix != ".webp":  # WebP has no DPI field
        assert tuple(round(d) for d in res.info["dpi"]) == (300, 300)


def test_exif_orientation_is_applied_and_reset(tmp_path, tiny_model):
    img = structured_image(64, 96)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src = tmp_path / "rot.jpg"
    Image.fromarray(img).save(src, exif=exif.tobytes(), quality=95)
    pic = read_image(src)
    assert pic.pixels.shape[:2] == (96, 64)
    out = denoise_file(src, tmp_path / "rot-out.png", tiny_model)
    res = Image.open(out)
    assert res.size == (64, 96)
    assert res.getexif().get(0x0112, 1) == 1


def test_alpha_passes_through_unchanged(tmp_path, tiny_model):
    rgb = structured_image()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    src = tmp_path / "a.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    res = np.asarray(Image.open(denoise_file(src, tmp_path / "b.png", tiny_model)))
    assert res.shape[2] == 4
    np.testing.assert_array_equal(res[..., 3], alpha)


def test_palette_with_transparency_and_la(tmp_path, tiny_model):
    p = Image.fromarray(structured_image()).convert("P", palette=Image.Palette.ADAPTIVE)
    p.info["transparency"] = 0
    src = tmp_path / "p.png"
    p.save(src, transparency=0)
    assert Image.open(denoise_file(src, tmp_path / "p-out.png", tiny_model)).mode == "RGBA"
    la = Image.fromarray(np.dstack([structured_image(channels=1), np.full((96, 128), 200, np.uint8)]), "LA")
    la.save(tmp_path / "la.png")
    res = Image.open(denoise_file(tmp_path / "la.png", tmp_path / "la-out.png", tiny_model))
    assert res.mode == "LA" and np.all(np.asarray(res)[..., 1] == 200)


def test_cmyk_and_grey_modes(tmp_path, tiny_model):
    Image.fromarray(structured_image()).convert("CMYK").save(tmp_path / "c.jpg")
    assert Image.open(denoise_file(tmp_path / "c.jpg", tmp_path / "c-out.jpg", tiny_model)).mode == "RGB"
    Image.fromarray(structured_image(channels=1)).save(tmp_path / "g.png")
    assert Image.open(denoise_file(tmp_path / "g.png", tmp_path / "g-out.png", tiny_model)).mode == "L"


def test_16bit_rgb_png_and_tiff_stay_16bit(tmp_path, tiny_model):
    import png
    import tifffile

    rgb16 = (structured_image().astype(np.uint16) * 257 + np.arange(128, dtype=np.uint16)[None, :, None])
    h, w, _ = rgb16.shape
    with open(tmp_path / "in16.png", "wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=16).write(f, rgb16.reshape(h, -1))
    tifffile.imwrite(tmp_path / "in16.tif", rgb16, photometric="rgb")
    for name in ("in16.png", "in16.tif"):
        out = denoise_file(tmp_path / name, tmp_path / ("out-" + name), tiny_model)
        pic = read_image(out)
        assert pic.bit_depth == 16 and pic.pixels.shape == (h, w, 3)
        # 16-bit precision kept: values are not all multiples of 257
        assert np.any(np.round(pic.pixels * 65535) % 257 != 0)
    assert png.Reader(filename=str(tmp_path / "out-in16.png")).read()[3]["bitdepth"] == 16


def test_16bit_grey_png(tmp_path, tiny_model):
    g16 = structured_image(channels=1).astype(np.uint16) * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = denoise_file(tmp_path / "g16.png", tmp_path / "g16-out.png", tiny_model)
    pic = read_image(out)
    assert pic.bit_depth == 16 and pic.channels == 1


def test_jpeg_output_flattens_alpha_on_white(tmp_path):
    pic = Picture(pixels=np.zeros((8, 8, 3), np.float32), alpha=np.zeros((8, 8), np.float32))
    res = np.asarray(Image.open(io.BytesIO(encode_image(pic, ".jpg"))))
    assert res.min() > 250


def test_decompression_bomb_limit(tmp_path):
    from aetool.errors import ImageTooLargeError

    Image.fromarray(structured_image()).save(tmp_path / "x.png")
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "x.png", max_pixels=1000)


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
def test_exif_orientation_in_png_tiff_and_16bit_tiff(tmp_path, orientation):
    import tifffile
    from PIL import ImageOps

    img = structured_image(40, 60)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(tmp_path / "r.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.png")))
    Image.fromarray(img).save(tmp_path / "r.tif", exif=exif.tobytes())
    tifffile.imwrite(tmp_path / "r16.tif", img.astype(np.uint16) * 257, photometric="rgb",
                     extratags=[(274, 3, 1, orientation, True)])
    for name in ("r.png", "r.tif", "r16.tif"):
        pic = read_image(tmp_path / name)
        np.testing.assert_array_equal(np.round(pic.pixels * 255).astype(np.uint8), expected, err_msg=name)


def test_bmp_output_flattens_alpha(tmp_path):
    pic = Picture(pixels=np.zeros((8, 8, 1), np.float32), alpha=np.zeros((8, 8), np.float32))
    res = np.asarray(Image.open(io.BytesIO(encode_image(pic, ".bmp"))))
    assert res.ndim == 2 and res.min() > 250


# ---------------------------------------------------------------- XMP, PNG text, size in the metadata
XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
       'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" exif:PixelXDimension="{w}" exif:PixelYDimension="{h}" '
       'tiff:Orientation="{o}"><dc:rights>(c) Ann Example</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>')


def xmp_of(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).info.get("xmp") or b""


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_xmp_is_carried_to_formats_that_hold_it(suffix):
    xmp = XMP.format(w=128, h=96, o=1).encode()
    buf = io.BytesIO()
    if suffix == ".png":  # Pillow writes XMP into PNG only as the iTXt chunk of XMP's specification
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode())
        Image.fromarray(structured_image()).save(buf, "PNG", pnginfo=info)
    elif suffix == ".tif":
        tags = Image.Exif()
        tags[700] = xmp
        Image.fromarray(structured_image()).save(buf, "TIFF", exif=tags)
    else:
        Image.fromarray(structured_image()).save(buf, Image.registered_extensions()[suffix], xmp=xmp)
    pic = read_image(buf.getvalue())
    assert pic.xmp == xmp
    assert xmp_of(encode_image(pic, suffix)) == xmp
    assert xmp_of(encode_image(pic, ".png" if suffix != ".png" else ".jpg")) == xmp  # across formats too


def test_png_text_chunks_are_carried_to_png_also_16_bit():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "scanned 1998")
    info.add_text("Author", "Zoë", zip=True)  # zTXt
    info.add_itxt("Title", "Été", lang="fr")
    info.add(b"tEXt", b"Source\0after the pixels", after_idat=True)
    for img in (structured_image(), structured_image(channels=1).astype(np.uint16) * 257):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG", pnginfo=info)
        pic = read_image(buf.getvalue())
        out = Image.open(io.BytesIO(encode_image(pic, ".png")))
        out.load()
        assert {k: str(v) for k, v in out.text.items()} == {"Comment": "scanned 1998", "Author": "Zoë",
                                                            "Title": "Été", "Source": "after the pixels"}
        assert out.text["Title"].lang == "fr"
    assert not Image.open(io.BytesIO(encode_image(pic, ".jpg"))).info.get("comment")  # PNG text goes to PNG only


def test_upscale_updates_exif_and_xmp_size_and_resolution(tmp_path, make_upscaler):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x011A], exif[0x011B], exif[0x0128] = 72, 72, 2  # 72 dots per inch
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 128, 96
    exif.get_ifd(0x8769)[0x829A] = 0.01  # an exposure time: kept
    src = tmp_path / "in.jpg"
    Image.fromarray(structured_image()).save(src, exif=exif, dpi=(72, 72), quality=95,
                                             xmp=XMP.format(w=128, h=96, o=1).encode())
    out = tmp_path / "out.jpg"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "--model", str(make_upscaler(2, bicubic=True)), "-q"])
    assert r.exit_code == 0, r.output
    res = Image.open(out)
    assert res.size == (256, 192) and res.info["dpi"] == (144, 144)
    tags = res.getexif()
    assert (tags[0x011A], tags[0x011B], tags[0x010F]) == (144, 144, "TestCam")
    assert (tags.get_ifd(0x8769)[0xA002], tags.get_ifd(0x8769)[0xA003]) == (256, 192)
    assert float(tags.get_ifd(0x8769)[0x829A]) == 0.01
    assert b'exif:PixelXDimension="256" exif:PixelYDimension="192"' in res.info["xmp"]


def test_a_tiff_enlarged_keeps_its_real_size_and_camera_exif_does_not_fail_tiff():
    from dataclasses import replace

    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    buf = io.BytesIO()
    Image.fromarray(structured_image(24, 32)).save(buf, "TIFF", exif=exif)
    pic = read_image(buf.getvalue())
    big = replace(pic, pixels=np.repeat(np.repeat(pic.pixels, 2, 0), 2, 1))
    res = Image.open(io.BytesIO(encode_image(big, ".tif")))
    assert res.size == (64, 48) and res.getexif()[0x010F] == "TestCam"  # the source's width was written back
    res.load()
    camera = Image.Exif()
    camera[0x010F] = "TestCam"
    camera.get_ifd(0x8769)[0x829A] = 0.01  # the Exif sub-IFD, as every camera writes
    pic = Picture(pixels=np.zeros((8, 8, 3), np.float32), exif=camera.tobytes()[6:])
    assert Image.open(io.BytesIO(encode_image(pic, ".tif"))).getexif()[0x010F] == "TestCam"


def test_xmp_orientation_is_reset_with_the_exif_one(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(structured_image(64, 96)).save(buf, "JPEG", exif=exif, xmp=XMP.format(w=96, h=64, o=6).encode())
    pic = read_image(buf.getvalue())
    assert pic.pixels.shape[:2] == (96, 64)
    out = Image.open(io.BytesIO(encode_image(pic, ".jpg")))
    assert b'tiff:Orientation="1"' in out.info["xmp"] and out.getexif()[0x0112] == 1
    assert b'exif:PixelXDimension="64" exif:PixelYDimension="96"' in out.info["xmp"]


# --- PNG written strip by strip, integer decoding, large files read from the disk ------------------

@pytest.mark.parametrize("level", [None, 1])  # ISA-L's deflate (what aetool writes), zlib's
@pytest.mark.parametrize("channels,dtype", [(1, np.uint8), (2, np.uint8), (3, np.uint8), (4, np.uint8),
                                            (1, np.uint16), (3, np.uint16), (4, np.uint16)])
def test_streamed_png_round_trips_every_layout_with_metadata(monkeypatch, channels, dtype, level):
    import zlib

    import png

    from aetool import pngstream

    monkeypatch.setattr(pngstream, "_STRIP_BYTES", 500)  # many strips: every boundary is crossed
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, np.iinfo(dtype).max + 1, (37, 29, channels), dtype=dtype)
    buf = io.BytesIO()
    compressobj = None if level is None else (lambda: zlib.compressobj(level))
    pngstream.write_png(buf, arr, compressobj=compressobj, icc=SRGB, dpi=(300.4, 72), exif=b"MM\0*\0\0\0\x08\0\0",
                        text=[(b"tEXt", b"Comment\0kept")])
    w, h, rows, info = png.Reader(bytes=buf.getvalue()).asDirect()
    got = np.vstack([np.asarray(r, dtype) for r in rows]).reshape(h, w, channels)
    assert (w, h, info["bitdepth"]) == (29, 37, 8 * dtype().itemsize) and np.array_equal(got, arr)
    im = Image.open(io.BytesIO(buf.getvalue()))
    assert im.info["icc_profile"] == SRGB and round(im.info["dpi"][0]) == 300 and im.info["Comment"] == "kept"
    assert im.info["exif"].endswith(b"MM\0*\0\0\0\x08\0\0")


def test_png_outputs_decode_to_the_same_pixels_as_pillows_and_stay_close_in_size():
    pic = Picture(structured_image().astype(np.float32) / 255)
    ours = encode_image(pic, ".png")
    buf = io.BytesIO()
    Image.fromarray(structured_image()).save(buf, "PNG", compress_level=1)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ours))), structured_image())
    assert len(ours) < 1.15 * buf.tell()


def test_integer_decoding_keeps_8_and_16_bit_samples(tmp_path):
    import png

    img8 = structured_image()
    Image.fromarray(img8).save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png", integer=True)
    assert pic.pixels.dtype == np.uint8 and np.array_equal(pic.pixels, img8)
    assert np.array_equal(read_image(tmp_path / "a.png").pixels, img8 / np.float32(255))
    img16 = img8.astype(np.uint16) * 257 + 3
    h, w, _ = img16.shape
    with open(tmp_path / "b.png", "wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=16).write(f, img16.reshape(h, -1))
    pic = read_image(tmp_path / "b.png", integer=True)
    assert pic.pixels.dtype == np.uint16 and pic.bit_depth == 16 and np.array_equal(pic.pixels, img16)


def test_a_large_file_is_decoded_from_the_disk_with_the_same_result(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    from aetool import imageio

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "before")
    info.add(b"tEXt", b"Source\0after the pixels", after_idat=True)
    Image.fromarray(structured_image()).save(tmp_path / "a.png", pnginfo=info, dpi=(240, 240))
    Image.fromarray(structured_image()).save(tmp_path / "a.jpg", quality=80)
    for name in ("a.png", "a.jpg"):
        whole = read_image(tmp_path / name)
        monkeypatch.setattr(imageio, "_READ_WHOLE_BELOW", 0)
        streamed = read_image(tmp_path / name)
        monkeypatch.undo()
        assert np.array_equal(whole.pixels, streamed.pixels)
        assert (whole.png_text, whole.dpi, whole.jpeg_quality) == (streamed.png_text, streamed.dpi, streamed.jpeg_quality)
    monkeypatch.setattr(imageio, "_READ_WHOLE_BELOW", 0)
    assert [kind for kind, _ in read_image(tmp_path / "a.png").png_text] == [b"tEXt", b"tEXt"]
