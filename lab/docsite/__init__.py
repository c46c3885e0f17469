"""The documentation site: pages generated from steps/ and the CLI, built with mkdocs-material."""
