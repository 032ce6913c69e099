import json
import urllib.request

import pytest

from qwenkit.core.lazy import lazy_exports
from qwenkit.core.serving import serve_in_background


def test_lazy_exports_resolve_on_access_and_reject_unknown_names():
    getattr_, names = lazy_exports("pkg", {"dumps": "json", "sqrt": "math"})
    assert names == ["dumps", "sqrt"]
    assert getattr_("dumps") is json.dumps
    with pytest.raises(AttributeError, match="'pkg' has no attribute 'loads'"):
        getattr_("loads")


def test_serve_in_background_serves_and_stops():
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/ping")
    def ping():
        return {"ok": True}

    with serve_in_background(app) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
            assert json.loads(response.read()) == {"ok": True}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)
