"""Paths of the API endpoints the client calls (relative to the base URL)."""

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.sunoapi.org"
SUBMIT_PATH: Final = "/api/v1/vocal-removal/generate"
RECORD_INFO_PATH: Final = "/api/v1/vocal-removal/record-info"
CREDIT_PATH: Final = "/api/v1/generate/credit"
GENERATION_RECORD_PATH: Final = "/api/v1/generate/record-info"
CALLBACK_ENDPOINT: Final = "callback"
