"""Maps the top-level folders engine/ and server/ into the import package delegation_machine.

Nothing named bare `engine` or `server` is installed; tests/engine/test_layout.py asserts it.
"""

from setuptools import find_packages, setup

FOLDERS = {"delegation_machine.engine": "engine", "delegation_machine.server": "server"}


def mapped_packages() -> list[str]:
    packages = []
    for package, folder in FOLDERS.items():
        packages.append(package)
        packages.extend(f"{package}.{sub}" for sub in find_packages(folder))
    return packages


setup(packages=mapped_packages(), package_dir=FOLDERS)
