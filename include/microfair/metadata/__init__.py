"""Metadata of an acquisition: what the file says (:mod:`.extract`), what the user adds
(:mod:`.sidecar`) and the records we publish (:mod:`.records`: Dublin Core, REMBI)."""

from microfair.metadata.extract import (
    ChannelInfo,
    ImageMetadata,
    ObjectiveInfo,
    SceneMetadata,
    extract_metadata,
)

__all__ = ["ChannelInfo", "ImageMetadata", "ObjectiveInfo", "SceneMetadata", "extract_metadata"]
