"""pytest set-up for the whole repository: notebooks run by nbval use the ``smoke`` profile
(unless CCC_PROFILE is already set) and draw no progress bars."""
import os

os.environ.setdefault("CCC_PROFILE", "smoke")
os.environ.setdefault("CCC_PROGRESS", "off")
os.environ.setdefault("MPLBACKEND", "Agg")
