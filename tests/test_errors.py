"""One error tree: every error carries its code and HTTP status, and the service answers with them
(an error without a status of its own is a server fault, never a 400)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import faceatlas
import faceatlas.errors as errors
from faceatlas.errors import FaceAtlasError
from faceatlas.service.errors import install_error_handlers

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, FaceAtlasError)]


def test_every_error_is_in_the_tree_drawing_and_exported():
    assert sorted(c.__name__ for c in CLASSES) == sorted(errors.__all__)
    for cls in CLASSES:
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the tree in the docstring"
        assert 400 <= cls.status <= 599


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_every_error_of_a_layer_is_drawn_in_the_tree_with_its_code_and_status():
    """The subclasses kept in their layer (retail's FaceMismatch, batch's ClusterUnavailable, ...)
    were named nowhere in the tree: their codes are contracts too. Every module is imported (the
    ``__main__`` modules run the CLI) and every subclass outside errors.py is drawn, on one line
    with its parent, code and status."""
    for module in pkgutil.walk_packages(faceatlas.__path__, "faceatlas."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    layered = {cls for cls in _subclasses(FaceAtlasError) if cls.__module__ != errors.__name__}
    assert {"FaceMismatch", "ClusterUnavailable", "LoginRequired"} <= {cls.__name__ for cls in layered}
    lines = errors.__doc__.splitlines()
    for cls in layered:
        drawn = [line for line in lines if f"{cls.__name__}({cls.__mro__[1].__name__})" in line]
        assert len(drawn) == 1, f"{cls.__module__}.{cls.__name__} is not drawn in errors.py's tree"
        assert drawn[0].split()[-2:] == [cls.code, str(cls.status)], (drawn[0], cls.code, cls.status)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.ModelIntegrityError("sha256 differs"), 500, "model_integrity"),
        (FaceAtlasError("unexpected"), 500, "error"),
        (errors.ConsentRequired("no consent"), 403, "consent_required"),
        (errors.UnknownPack("no such pack"), 400, "unknown_pack"),
        (errors.FarNotCalibrated("far must be one of"), 422, "validation_error"),
        (errors.ModelMismatch("another space"), 409, "model_mismatch"),
        (errors.Overloaded("busy", retry_after=1), 503, "overloaded"),
        (errors.NotFound("gone"), 404, "not_found"),
    ],
)
def test_the_service_answers_with_the_errors_own_status(error, status, code):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    response = TestClient(app).get("/boom")
    assert response.status_code == status
    message = str(error) if error.client_message is None else error.client_message  # see below
    assert response.json() == {"error": {"code": code, "message": message}}
    assert ("retry-after" in response.headers) == (error.retry_after is not None)


@pytest.mark.parametrize("error", [
    errors.ModelIntegrityError("/srv/models/antispoof/x.onnx: sha256 ab12 does not match the published cd34 of "
                               "antispoof/x.onnx; the file is corrupt or another model. Delete it and fetch it again."),
    errors.ModelMissing("model antispoof/x.onnx not found in:\n  /srv/models/antispoof/x.onnx\n  /root/.cache/"
                        "faceatlas/models/antispoof/x.onnx\nDownload it: https://example.org/x.onnx"),
    errors.ModelError("pack 'dlib': /srv/models/shape_predictor_68.dat does not load"),
    errors.InvalidSetting("FACEATLAS_CALIBRATION='x': no calibration of that name in /root/.cache/faceatlas"),
    errors.VectorStoreUnavailable("Milvus could not search faceatlas_svc_acme_1a2b3c4d_c7: no Milvus server could "
                                  "be reached at http://milvus.internal:19530 (/srv); check FACEATLAS_MILVUS_URI"),
])
def test_an_error_for_the_operator_answers_its_code_and_a_generic_message_and_logs_the_detail(error, caplog):
    """A model file's path and sha256, the folders searched, a download URL, a setting: the server's
    operator reads them in the log, the client gets the error's code with a generic message."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    with caplog.at_level("ERROR", logger="faceatlas.service.errors"):
        response = TestClient(app).get("/boom")
    assert response.status_code == error.status
    assert response.json() == {"error": {"code": error.code, "message": error.client_message}}
    assert "/srv" not in response.text and "/root" not in response.text and "FACEATLAS_" not in response.text
    assert "milvus.internal" not in response.text and "acme" not in response.text
    assert str(error) in caplog.text


def test_domain_errors_are_typed(tmp_path):
    """Retail and the gallery's exchange raised bare ValueError/KeyError, which the API turned into 500s."""
    from faceatlas.apps.retail import StoreConfig
    from faceatlas.gallery.exchange import read_header

    store = StoreConfig.model_validate({"id": "s", "name": "S", "cameras": [], "products": []})
    with pytest.raises(errors.NotFound):
        store.camera("nowhere")
    with pytest.raises(errors.NotFound):
        store.product("nothing")
    bad = tmp_path / "store.yaml"
    bad.write_text("id: [unclosed")
    with pytest.raises(errors.InvalidInput):
        StoreConfig.load(bad)
    not_an_export = tmp_path / "x.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), not_an_export)
    with pytest.raises(errors.InvalidInput):
        read_header(not_an_export)
