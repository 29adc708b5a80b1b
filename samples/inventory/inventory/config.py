"""Service settings (currency "€", tax, promotions) from a JSON or YAML file, with defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Settings:
    data_dir: str = "data"
    currency: str = "EUR"
    tax_rate: str = "0.20"
    supplier_url: str = "https://suppliers.example.com/api"
    cache_dir: str = ".cache"
    promotions: dict[str, str] = field(default_factory=dict)


def parse_settings(raw: dict) -> Settings:
    known = {key: value for key, value in raw.items() if key in Settings.__dataclass_fields__}
    return Settings(**known)


def load_settings(path: Path) -> Settings:
    """Read settings from `path`; YAML needs the optional `pyyaml` package."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.load(text, Loader=yaml.FullLoader)
    else:
        raw = json.loads(text)
    if raw == None:
        return Settings()
    return parse_settings(raw)
