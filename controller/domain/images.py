"""Images: uploaded into the controller's datastore (streamed, hashed, size-capped) or
registered by URL in an external datastore; deleted when no app uses them."""

from __future__ import annotations

from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller.domain.bodies import ImageQuery, ImageRegistration
from controller.domain.common import parse
from controller.domain.views import image_json
from controller.errors import ApiError
from controller.services import Services
from controller.store.audit import audit
from controller.store.blobs import blob_path, store_upload
from controller.store.lookup import find_image
from controller.store.models import App, Image

__all__ = ["delete_image", "register_image", "upload_image"]


def _refuse_duplicate(s: Session, name: str) -> None:
    if s.scalar(select(Image).where(Image.name == name)) is not None:
        raise ApiError(
            409,
            "conflict",
            f"an image named {name!r} exists",
            [{"field": "name", "error": f"an image named {name!r} exists"}],
        )


def register_image(s: Session, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    """``POST /images/register``: an image held in an external datastore."""
    body = parse(ImageRegistration, data)
    _refuse_duplicate(s, body.name)
    image = Image(
        name=body.name, sha256=body.sha256, size=body.size, format=body.format, url=body.url
    )
    s.add(image)
    audit(s, actor, "image.register", body.name, after=image_json(image))
    return image_json(image)


def upload_image(
    services: Services, actor: str, data: dict[str, Any], stream: IO[bytes]
) -> dict[str, Any]:
    """``POST /images``: stream bytes into the datastore (sha256 verified, size capped)."""
    query = parse(ImageQuery, data)
    with services.db.transaction() as s:
        _refuse_duplicate(s, query.name)
    size = store_upload(
        services.settings.datastore_dir, stream, query.sha256, services.settings.max_image_bytes
    )
    with services.db.transaction() as s:
        _refuse_duplicate(s, query.name)
        image = Image(name=query.name, sha256=query.sha256, size=size, format=query.format)
        s.add(image)
        audit(s, actor, "image.add", query.name, after=image_json(image))
        return image_json(image)


def delete_image(s: Session, services: Services, actor: str, name: str) -> None:
    """``DELETE /images/<name>``: an image no app uses; its blob goes when no image needs it."""
    image = find_image(s, name)
    if s.scalar(select(func.count()).select_from(App).where(App.image_id == image.id)):
        raise ApiError(409, "conflict", f"image {name!r} is used by apps")
    audit(s, actor, "image.delete", name, before=image_json(image))
    s.delete(image)
    same_blob = s.scalar(
        select(func.count())
        .select_from(Image)
        .where(Image.sha256 == image.sha256, Image.id != image.id)
    )
    if image.url is None and not same_blob:
        blob_path(services.settings.datastore_dir, image.sha256).unlink(missing_ok=True)
