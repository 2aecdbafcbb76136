"""The model catalogue and the one checked loader (issue 13): every bundled model is served from it."""

from __future__ import annotations

import json
import shutil

import pytest

from CardiacLandmarksLib.core.config import models_root
from CardiacLandmarksLib.core.errors import ModelIntegrityError
from CardiacLandmarksLib.models import catalogue


def test_every_bundled_model_is_in_the_catalogue_and_agrees_with_its_card():
    entries = catalogue.catalogue()
    files = {p.stem for p in models_root().glob("*.pt")}
    assert files == set(entries), "a weights file without catalogue entry, or an entry without weights"
    for e in entries.values():
        card = json.loads((models_root() / e.card).read_text())
        assert card["sha256"] == e.sha256 == catalogue.sha256_file(models_root() / e.file)
        assert str(card["version"]) == e.version
        assert e.task and e.licence and e.input_px and e.input_mm


def test_each_task_loader_goes_through_the_catalogue():
    from CardiacLandmarksLib.confidence.phdnet import PhdNetConfidence
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.perfusion import segmentation

    catalogue._CACHE.clear()
    sax = load_model("sax", "cpu")
    lax = load_model("4ch", "cpu")
    phd = PhdNetConfidence.load("cpu")
    perf = segmentation.load_model(device="cpu")
    assert {k[0] for k in catalogue._CACHE} == {"sax_unet", "lax4ch_unet", "sax_phdnet", "perfusion_unet"}
    assert sax.sha256 == catalogue.catalogue()["sax_unet"].sha256
    assert lax.sha256 == catalogue.catalogue()["lax4ch_unet"].sha256
    assert phd.sha256 == catalogue.catalogue()["sax_phdnet"].sha256
    assert perf.sha256 == catalogue.catalogue()["perfusion_unet"].sha256
    # cached: the same network object on a second load
    assert load_model("sax", "cpu").net is sax.net


def test_model_for_names_the_model_or_says_what_exists():
    assert catalogue.model_for("landmarks", "sax") == "sax_unet"
    # the SAX model per sequence (issue 16): LGE and perfusion get the LGE model, cine and unknown the general one
    assert catalogue.model_for("landmarks", "sax", sequence="lge") == "sax_unet_lge"
    assert catalogue.model_for("landmarks", "sax", sequence="perfusion") == "sax_unet_lge"
    for seq in ("cine", "t1", "unknown", None):
        assert catalogue.model_for("landmarks", "sax", sequence=seq) == "sax_unet"
    assert catalogue.model_for("landmarks", "4ch", sequence="lge") == "lax4ch_unet"  # no LGE model: the general one
    # function measures with the cine-only SAX v1.3.1 (its own catalogue task), landmarks never come from it
    assert catalogue.model_for("function_segmentation", "sax") == "sax_unet_function"
    from CardiacLandmarksLib.function.pipeline import function_model_name

    assert function_model_name() == "sax_unet_function"
    assert catalogue.model_for("perfusion_segmentation") == "perfusion_unet"
    with pytest.raises(ModelIntegrityError, match="no bundled model for task 'landmarks', view '2ch'"):
        catalogue.model_for("landmarks", "2ch")


def test_catalogue_mismatch_is_named_and_refresh_repairs_it(tmp_path):
    for p in models_root().iterdir():
        if p.name.startswith("sax_unet") or p.name == catalogue.CATALOGUE_FILE:
            shutil.copy(p, tmp_path / p.name)
    cat = json.loads((tmp_path / catalogue.CATALOGUE_FILE).read_text())
    cat["models"] = [m for m in cat["models"] if m["name"] == "sax_unet"]
    cat["models"][0]["sha256"] = "0" * 64
    (tmp_path / catalogue.CATALOGUE_FILE).write_text(json.dumps(cat))
    with pytest.raises(ModelIntegrityError, match="does not match its catalogue"):
        catalogue.checked_files("sax_unet", tmp_path)
    entries = catalogue.refresh(tmp_path)
    assert entries[0].sha256 == catalogue.sha256_file(tmp_path / "sax_unet.pt")
    catalogue.checked_files("sax_unet", tmp_path)


def test_models_command_lists_every_model(capsys):
    from CardiacLandmarksLib.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("sax_unet", "sax_unet_lge", "sax_unet_function", "sax_phdnet", "lax4ch_unet", "perfusion_unet"):
        assert name in out
    # the cine model does not serve every sequence: LGE and perfusion series get the LGE model (it said "every
    # sequence"), which is what the pipeline picks
    from CardiacLandmarksLib.models.catalogue import model_for

    line = next(x for x in out.splitlines() if x.startswith("sax_unet "))
    assert "every sequence but lge, perfusion (sax_unet_lge)" in line
    assert model_for("landmarks", "sax", sequence="lge") == model_for("landmarks", "sax", sequence="perfusion") == "sax_unet_lge"
    assert model_for("landmarks", "sax", sequence="cine") == "sax_unet"
