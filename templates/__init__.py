# SPDX-License-Identifier: Apache-2.0
"""Report templates (TOML), installed as package data ``medig.templates``; edit ``report.toml``."""
