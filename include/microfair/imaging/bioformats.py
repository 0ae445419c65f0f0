"""Optional Bio-Formats fallback (GPL-2.0), configured to run fully offline.

Enabled only when ``MICROFAIR_BIOFORMATS_JAR`` names the ``bioformats_package.jar``
(``python -m microfair.imaging.fetch_bioformats`` puts it in ``vendor/bioformats/``) and
the optional ``bioformats`` extra (bioio-bioformats, scyjava) is installed.

The Java VM starts on the first Bio-Formats read and lives until the process ends: one
JVM per process, no restart, and the process must not fork afterwards. So nothing here
runs at import time, and :func:`microfair.imaging.open_image` only comes here when no
bioio plugin could read a file.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

JAR_ENV = "MICROFAIR_BIOFORMATS_JAR"
HEAP_ENV = "MICROFAIR_BIOFORMATS_XMX"  # e.g. "1g"; bounds the JVM heap
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")

_lock = threading.Lock()
_configured_jar: Path | None = None


class BioformatsUnavailable(RuntimeError):
    """The Bio-Formats fallback is not set up (no jar, no Java, or the extra is missing)."""


def jar_path() -> Path | None:
    """The configured jar, or None when the fallback is switched off."""
    value = os.environ.get(JAR_ENV, "").strip()
    return Path(value) if value else None


def is_configured() -> bool:
    """True when a jar is configured and present (does not start Java)."""
    jar = jar_path()
    return jar is not None and jar.is_file()


def configure() -> Path:
    """Point scyjava at the local jar and forbid every download; idempotent.

    Must run before the JVM starts. Raises :class:`BioformatsUnavailable` otherwise.
    """
    global _configured_jar
    with _lock:
        jar = jar_path()
        if jar is None or not jar.is_file():
            raise BioformatsUnavailable(f"{JAR_ENV} is not set or does not name a file: {jar}")
        if _configured_jar is not None:
            if _configured_jar != jar:
                raise BioformatsUnavailable(
                    f"Bio-Formats already configured with {_configured_jar}; one JVM per process"
                )
            return jar
        try:
            import scyjava
            import scyjava.config
            import bffile._java_stuff  # noqa: F401 - its import appends Maven endpoints we remove
        except ImportError as err:
            raise BioformatsUnavailable(
                "the optional 'bioformats' extra is not installed (pip install 'microfair[bioformats]')"
            ) from err
        if scyjava.jvm_started():
            raise BioformatsUnavailable("a Java VM is already running in this process; cannot configure it")
        if not os.environ.get("JAVA_HOME") and DEFAULT_JAVA_HOME.is_dir():
            os.environ["JAVA_HOME"] = str(DEFAULT_JAVA_HOME)
        scyjava.config.endpoints.clear()
        scyjava.config.set_java_constraints(fetch="never")
        scyjava.config.add_classpath(str(jar))
        heap = os.environ.get(HEAP_ENV, "").strip()
        if heap:
            scyjava.config.add_option(f"-Xmx{heap}")
        _configured_jar = jar
        log.info("Bio-Formats fallback configured offline with %s (JAVA_HOME=%s)",
                 jar, os.environ.get("JAVA_HOME"))
        return jar


def reader_class() -> type:
    """bioio-bioformats' Reader, after :func:`configure`."""
    configure()
    from bioio_bioformats import Reader

    return Reader
