"""One rich console for everything cvtrain shows, shared with rich logging; errors on stderr."""

from rich import get_console
from rich.console import Console

console = get_console()  # RichHandler logs to this one too, so bars and log lines interleave
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
