"""/api/v1/openapi.json (the contract) and /api/v1/docs (Swagger UI over it), both public.

Swagger UI's files come from the flask-swagger-ui wheel (it vendors the dist
build), so the page works with no CDN.
"""

from __future__ import annotations

import json
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from pydantic import BaseModel, ConfigDict

from api.contract import documented, openapi
from api.security import public

bp = Blueprint("docs", __name__, url_prefix="/api/v1")

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Kirana API</title>
  <link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle(%s);
    };
  </script>
</body>
</html>
"""


class OpenApiDocument(BaseModel):
    """The OpenAPI 3.1 document"""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict
    paths: dict


@bp.get("/openapi.json")
@public
@documented(ok={200: OpenApiDocument}, tags=("docs",))
def spec() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi(current_app))


@bp.get("/docs")
@public
@documented(ok={200: "text/html"}, tags=("docs",))
def page() -> Response:
    """Interactive documentation (Swagger UI)."""
    config = {"url": "openapi.json", "dom_id": "#swagger-ui", "layout": "BaseLayout", "deepLinking": True,
              "persistAuthorization": True}
    # Relative URLs: the page works behind a proxy that mounts the API under another prefix.
    return Response(PAGE % json.dumps(config), mimetype="text/html")


@bp.get("/docs/<path:filename>")
@public
def asset(filename: str) -> Response:
    return send_from_directory(ASSETS, filename, max_age=3600)
