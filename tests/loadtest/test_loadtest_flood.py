"""The flood scenario's pieces: its multipart body is what the service reads, and hey's summary is parsed."""

from __future__ import annotations

from starlette.datastructures import Headers

from app.serving.bodies import split_images
from app.serving.images import ImageLimits, probe_images
from loadtest.scenarios.flood import BOUNDARY, flood_body, parse_hey

HEY = """
Summary:
  Requests/sec:\t6.1
Latency distribution:
  10% in 0.0010 secs
  50% in 0.0023 secs
  99% in 0.0100 secs
Status code distribution:
  [200]\t37 responses
  [503]\t2 responses
"""


def test_the_flood_body_is_two_images_of_the_side_asked_for() -> None:
    headers = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    images = split_images(headers, "multipart/form-data", flood_body(2, 300), max_images=16)
    assert len(images) == 2
    assert probe_images(images, ImageLimits(max_pixels=10**6)) == 2 * 300 * 300


def test_hey_summary_gives_p50_and_statuses() -> None:
    assert parse_hey(HEY) == {"p50_s": 0.0023, "statuses": {"200": 37, "503": 2}}
