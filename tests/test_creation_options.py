"""COG creation options (``write_cog(creation_options=...)``, ``--co KEY=VALUE``) and CLI flag rendering."""

from __future__ import annotations

import pytest
import rasterio

from geo_ntl.exceptions import OutputExistsError, ParameterError
from geo_ntl.io import cog_creation_options, write_cog

FAST = ("--param", "iterations=1", "--tile", "32", "--device", "cpu", "--workers", "0")


def test_cog_creation_options__user_keys_override_the_profile():
    options = cog_creation_options(None, None, {"level": "9", "BlockSize": "256"})
    assert options["LEVEL"] == "9" and options["BLOCKSIZE"] == "256"
    assert options["COMPRESS"] == "DEFLATE" and options["OVERVIEWS"] == "AUTO"
    assert cog_creation_options("none")["COMPRESS"] == "NONE"
    assert "PREDICTOR" not in cog_creation_options(None, None, {"COMPRESS": "NONE"})


@pytest.mark.parametrize(
    ("compress", "blocksize", "options", "match"),
    [
        (None, None, {"BLOCKSIZE": "100"}, "BLOCKSIZE=100 is not a positive multiple of 16"),
        (None, None, {"BLOCKSIZE": "big"}, "BLOCKSIZE=big is not a number"),
        (None, 100, None, "blocksize must be a positive multiple of 16"),
        ("LZW", None, {"COMPRESS": "ZSTD"}, "contradicts compress='LZW'"),
        (None, 256, {"BLOCKSIZE": "512"}, "contradicts blocksize=256"),
        (None, None, {"OVERVIEWS": "NONE"}, "OVERVIEWS is set by geo_ntl"),
        (None, None, {"OVERVIEW_RESAMPLING": "FANCY"}, "OVERVIEW_RESAMPLING=FANCY"),
    ],
)
def test_cog_creation_options__bad_options_raise(compress, blocksize, options, match):
    with pytest.raises(ParameterError, match=match) as info:
        cog_creation_options(compress, blocksize, options)
    assert "--" not in str(info.value)


def test_write_cog__creation_options_change_the_encoding_not_the_pixels(tmp_path, rgb_scene):
    plain = write_cog(rgb_scene, tmp_path / "plain.tif")
    tuned = write_cog(
        rgb_scene,
        tmp_path / "tuned.tif",
        creation_options={"COMPRESS": "ZSTD", "BLOCKSIZE": "32", "LEVEL": "1"},
    )
    with rasterio.open(plain) as a, rasterio.open(tuned) as b:
        assert b.compression.name.upper() == "ZSTD" and b.block_shapes[0] == (32, 32)
        assert (a.read() == b.read()).all()


def test_write_cog__bad_creation_option_writes_nothing(tmp_path, rgb_scene):
    with pytest.raises(ParameterError):
        write_cog(rgb_scene, tmp_path / "o.tif", creation_options={"BLOCKSIZE": "100"})
    assert not list(tmp_path.iterdir())


def test_cli_message__renders_parameters_as_flags():
    from geo_ntl.cli._flags import cli_message

    error = OutputExistsError(
        "output /tmp/out/overwrite.tif exists; pass overwrite=True or choose another `out`",
        options={"overwrite=True": "overwrite", "`out`": "out"},
    )
    assert cli_message(error) == (
        "output /tmp/out/overwrite.tif exists; pass --overwrite or choose another --out"
    )
    device = ParameterError("use device='cpu'", options={"device='cpu'": "device"})
    assert cli_message(device) == "use --device cpu"


@pytest.mark.parametrize("command", ["enhance", "mosaic"])
def test_cli_co__passed_to_the_cog_driver(runner, tmp_path, rgb_scene_file, command):
    out = tmp_path / "o.tif"
    args = FAST if command == "enhance" else ("--workers", "0")
    res = runner(command, rgb_scene_file, "--out", out, "--co", "BLOCKSIZE=32", "--co",
                 "compress=zstd", *args)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as src:
        assert src.block_shapes[0] == (32, 32) and src.compression.name.upper() == "ZSTD"


def test_cli_co__not_part_of_the_job_signature(runner, tmp_path, rgb_scene_file):
    out = tmp_path / "o.tif"
    assert runner("enhance", rgb_scene_file, "--out", out, *FAST).exit_code == 0
    again = runner("enhance", rgb_scene_file, "--out", out, "--co", "LEVEL=1", *FAST)
    assert again.exit_code == 0 and "kept" in again.stderr


@pytest.mark.parametrize(
    ("co", "words"),
    [
        (("--co", "LEVEL"), ("--co 'LEVEL' is not KEY=VALUE",)),
        (("--co", "BLOCKSIZE=100"), ("--co BLOCKSIZE=100", "multiple of 16")),
        (("--co", "OVERVIEWS=NONE"), ("--co OVERVIEWS is set by geo_ntl",)),
        (("--co", "COMPRESS=ZSTD", "--compress", "LZW"), ("--compress LZW", "--co COMPRESS=ZSTD")),
        (("--compress", "LZW", "--co", "COMPRESS=ZSTD"), ("--compress LZW", "--co COMPRESS=ZSTD")),
    ],
)
@pytest.mark.parametrize("command", ["enhance", "deblur", "mosaic"])
def test_cli_co__bad_option_is_one_error_line(runner, tmp_path, rgb_scene_file, command, co, words):
    out = tmp_path / "o.tif"
    res = runner(command, rgb_scene_file, "--out", out, *co)
    assert res.exit_code == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists()


def _float_radiance(shape=(1, 96, 96)):
    from geo_ntl.testing import make_scene

    return make_scene(shape, dtype="float32")


@pytest.mark.parametrize(
    ("dtype", "bands", "codec"),
    [("float32", 1, "JPEG"), ("uint16", 1, "JPEG"), ("uint8", 4, "JPEG"), ("uint8", 1, "WEBP")],
)
def test_write_cog__codec_the_data_cannot_take_is_refused_before_any_work(
    tmp_path, dtype, bands, codec
):
    from geo_ntl.testing import make_scene

    da = make_scene((bands, 64, 64), dtype=dtype)
    out = tmp_path / "o.tif"
    out.write_bytes(b"the previous output")
    with pytest.raises(ParameterError, match=f"compression {codec} cannot encode"):
        write_cog(da, out, overwrite=True, creation_options={"COMPRESS": codec})
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


@pytest.mark.parametrize("threads", ["ALL_CPUS", "1"])
def test_write_cog__gdal_error_on_its_encoding_threads_fails_the_write(
    tmp_path, monkeypatch, threads
):
    """A codec the table lets through but GDAL cannot use: GDAL's error fails the write.

    On its own encoding threads (several CPUs) or on the calling thread (one CPU).
    """
    import geo_ntl.io
    from geo_ntl.exceptions import WriteError

    monkeypatch.setattr(geo_ntl.io, "CODEC_LIMITS", {})
    monkeypatch.setattr(geo_ntl.io, "gdal_worker_threads", lambda: threads)
    out = tmp_path / "o.tif"
    good = write_cog(_float_radiance(), out)
    before = good.read_bytes()
    with pytest.raises(WriteError, match="JPEG"):
        write_cog(_float_radiance(), out, overwrite=True, creation_options={"COMPRESS": "JPEG"})
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


def test_cli__codec_the_scene_cannot_take_is_an_error_line(tmp_path, runner):
    scene = write_cog(_float_radiance((1, 64, 64)), tmp_path / "radiance.tif")
    result = runner("mosaic", scene, "--out", tmp_path / "m.tif", "--co", "COMPRESS=JPEG")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: compression JPEG cannot encode 1 band(s) of float32")
    assert not (tmp_path / "m.tif").exists()


def test_cli_deblur__codec_is_refused_before_the_scene_is_read(runner, tmp_path, monkeypatch):
    """No pixel is read (no GAN, no scene maximum) for a codec the output cannot take."""
    import geo_ntl.io

    scene = write_cog(_float_radiance((1, 64, 64)), tmp_path / "radiance.tif")
    out = tmp_path / "o.tif"
    out.write_bytes(b"a good output")

    def no_read(*args, **kwargs):
        raise AssertionError("the scene was read")

    monkeypatch.setattr(geo_ntl.io, "ensure_valid_data", no_read)
    res = runner("deblur", scene, "--out", out, "--overwrite", "--co", "COMPRESS=JPEG",
                 "--device", "cpu", "--workers", "0")  # fmt: skip
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith("error: compression JPEG cannot encode 1 band(s) of float32")
    assert out.read_bytes() == b"a good output"
