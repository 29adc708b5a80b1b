"""Package marker: makes the bundled rule files (*.yaml) package data that ships in wheels."""
