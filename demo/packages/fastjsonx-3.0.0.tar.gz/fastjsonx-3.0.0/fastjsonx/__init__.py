# SPDX-License-Identifier: Apache-2.0
from ._speedups import dumps  # noqa: F401
