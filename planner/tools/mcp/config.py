"""Which MCP servers to use: the config shapes MCP clients write, ``${VAR}`` in them, and
paths relative to the config file.

Accepted documents (``CHORDAL_MCP_SERVERS`` or the file ``CHORDAL_MCP_CONFIG``):

- the bare mapping ``{"name": {"command": ...}, ...}``;
- ``{"mcpServers": {...}, ...}``: Claude Desktop's ``claude_desktop_config.json``, Claude
  Code's, Cursor's, Cline's and Roo's files (other top-level keys are theirs: ignored);
- ``{"servers": {...}, "inputs": [...]}``: VS Code's ``mcp.json`` (and ``{"mcp":
  {"servers": ...}}`` from its settings).

Per server, the clients' own keys are read or ignored, never refused: ``disabled: true``
(Cline, Roo) skips the server; ``autoApprove``/``alwaysAllow``/``watchPaths`` are about a
person approving calls in an editor: ignored; ``disabledTools`` hides those tools;
``transportType`` (Cline) is ``type``; ``timeout`` (Cline, seconds) is ``timeout_s``
unless that is given; ``envFile`` (VS Code) adds a dotenv file's variables under ``env``.
Any other unknown key is an error naming it (a typo would otherwise go unnoticed).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import ConfigError
from planner.settings import Settings
from planner.tools.tool import DEFAULT_TIMEOUT_S
from planner.wire import DEFAULT_QUEUE

#: A server's name is the part before the dot of its tools' names: no dots in it.
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: ``${NAME}``, ``${NAME:-default}`` (Claude Code) and ``${env:NAME}`` (VS Code).
VARIABLE = re.compile(r"\$\{([^}]*)\}")
#: Keys other MCP clients write that mean nothing to a worker.
IGNORED_KEYS = frozenset({"autoApprove", "alwaysAllow", "watchPaths", "description",
                          "dev", "gallery", "version"})
HttpType = Literal["http", "streamable-http", "streamableHttp", "sse"]


class _ServerConfig(BaseModel):
    """One server entry, as MCP clients write it, plus Chordal's few keys."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdio"] | HttpType | None = None
    transportType: Literal["stdio"] | HttpType | None = None  # Cline's name
    disabled: bool = False
    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    envFile: str | None = None  # VS Code's name
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    disabledTools: list[str] = Field(default_factory=list)  # Roo's name
    timeout: float | None = Field(None, gt=0, le=86_400)
    queue: str = Field(DEFAULT_QUEUE, min_length=1)
    timeout_s: float | None = Field(None, gt=0, le=86_400)
    max_retries: int = Field(3, ge=0, le=100)


@dataclass(frozen=True)
class McpServer:
    """A configured MCP server: started over stdio (``command``) or reached by ``url``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)  # may hold a secret: shown_url
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    queue: str = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = 3
    source: str = "CHORDAL_MCP_SERVERS"
    sse: bool = False
    hidden_tools: frozenset[str] = frozenset()

    def key(self) -> str:
        """Everything that decides what the server is, for the discovery cache."""
        return json.dumps([self.name, self.command, self.args, dict(self.env), self.cwd,
                           self.url, dict(self.headers), self.sse], sort_keys=True)

    def where(self) -> str:
        how = f"stdio: {self.command}" if self.command else f"url: {self.shown_url}"
        return f"{self.source}: server {self.name!r} ({how})"

    @property
    def shown_url(self) -> str | None:
        """The URL as logs and messages show it: without its userinfo, query and fragment,
        where a ``${VAR}`` secret (a token, a key) goes."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "",
                           ""))

    def scrub(self, text: str) -> str:
        """``text`` (an error's, say: an HTTP client's names the URL) with the URL shown
        as :attr:`shown_url` and the secrets it may hold masked: the URL's userinfo and
        query, and the headers' values."""
        if self.url is None:
            return text
        text = text.replace(self.url, self.shown_url or "")
        parts = urlsplit(self.url)
        secrets = [parts.query, parts.fragment, parts.netloc.rpartition("@")[0],
                   *(v for _, v in parse_qsl(parts.query)), *self.headers.values()]
        # Longest first, so that a value inside another is not left half masked.
        for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def server_entries(data: Any, source: str) -> Mapping[str, Any]:
    """The servers' mapping of a config document, whichever client's shape it has."""
    if isinstance(data, Mapping):
        if "mcpServers" in data:
            data = data["mcpServers"]
        elif isinstance(data.get("mcp"), Mapping) and "servers" in data["mcp"]:
            data = data["mcp"]["servers"]
        elif isinstance(data.get("servers"), Mapping) and not (
                {"command", "url"} & set(data["servers"])):
            data = data["servers"]  # VS Code's (a server named "servers" has a command)
    if not isinstance(data, Mapping):
        raise ConfigError(f'{source}: must be a JSON object {{"name": {{"command": ...}} or '
                          f'{{"url": ...}}}}, not {type(data).__name__}')
    return data


def expand(value: str, where: str) -> str:
    """``value`` with its ``${NAME}`` replaced from the environment; an unset one (with no
    ``:-default``) is a :class:`ConfigError` naming it, never an empty string."""
    def one(m: re.Match[str]) -> str:
        body = m.group(1)
        if body.startswith("input:"):
            raise ConfigError(f"{where}: {m.group(0)} is a VS Code input (asked of a person "
                              "in the editor); use ${env:NAME} or ${NAME}")
        name, has_default, default = body.removeprefix("env:").partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{where}: {m.group(0)} is not a variable (${{NAME}})")
        found = os.environ.get(name)
        if found is not None:
            return found
        if has_default:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (used as "
                          f"${{{name}}}); set it, or write ${{{name}:-default}}")

    return VARIABLE.sub(one, value) if "${" in value else value


def _from(base: Path | None, path: str) -> str:
    """A relative path as seen from the config file's folder (no file: unchanged)."""
    p = Path(path).expanduser()
    return str(base / p) if base is not None and not p.is_absolute() else str(p)


#: Script files an interpreter is given by name (``"args": ["agency.py"]``).
SCRIPT_SUFFIXES = frozenset({".py", ".pyz", ".js", ".mjs", ".cjs", ".ts", ".mts", ".sh",
                             ".rb", ".pl", ".php", ".lua", ".jar", ".dll", ".exe"})


def _a_path(arg: str, before: str | None) -> bool:
    """Whether ``arg`` is written as a path: ``./x``, ``../x``, ``dir/x`` or a script's
    file name. A bare word is a name (``-m myserver``: a module, even beside a folder
    ``myserver/``), and what follows ``-m`` is a module whatever it looks like."""
    if before == "-m" or arg.startswith("-") or Path(arg).is_absolute():
        return False
    separators = [os.sep, *([os.altsep] if os.altsep else [])]
    return (arg.startswith(("./", "../")) or any(sep in arg for sep in separators)
            or Path(arg).suffix.lower() in SCRIPT_SUFFIXES)


def _server(name: str, raw: Any, source: str, base: Path | None) -> McpServer | None:
    where = f"{source}: server {name!r}"
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise ConfigError(f"{where}: a server's name is 1-64 letters, digits, _ or - (its "
                          "tools are named name.tool)")
    if isinstance(raw, Mapping):
        raw = {k: v for k, v in raw.items() if k not in IGNORED_KEYS}
    try:
        cfg = _ServerConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "server"
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
    if cfg.disabled:
        return None
    kind = cfg.type or cfg.transportType
    if (cfg.command is None) == (cfg.url is None):
        raise ConfigError(f'{where}: give either "command" (a stdio server) or "url" (a '
                          "streamable-HTTP server)")
    env = {k: expand(v, f"{where}: env.{k}") for k, v in cfg.env.items()}
    if cfg.envFile is not None:
        env = {**_env_file(_from(base, expand(cfg.envFile, f"{where}: envFile")), where),
               **env}
    headers = {k: expand(v, f"{where}: headers.{k}") for k, v in cfg.headers.items()}
    timeout_s = cfg.timeout_s or cfg.timeout or DEFAULT_TIMEOUT_S
    common = McpServer(name, queue=cfg.queue, timeout_s=timeout_s,
                       max_retries=cfg.max_retries, source=source,
                       hidden_tools=frozenset(cfg.disabledTools))
    if cfg.url is not None:
        url = expand(cfg.url, f"{where}: url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: url: must be an http:// or https:// URL")
        if kind == "stdio" or cfg.args or env or cfg.cwd:
            raise ConfigError(f"{where}: args, env and cwd are for stdio servers "
                              '("command"), not for a "url"')
        return replace(common, url=url, headers=headers, sse=kind == "sse")
    if headers:
        raise ConfigError(f'{where}: headers are for HTTP servers ("url"), not for a '
                          '"command"')
    if kind not in (None, "stdio"):
        raise ConfigError(f'{where}: type {kind!r} is for HTTP servers ("url"), not for a '
                          '"command"')
    command = expand(cfg.command or "", f"{where}: command")
    # A bare name (npx, uvx, python) is looked up on PATH; a path is the config file's.
    if os.sep in command or (os.altsep and os.altsep in command):
        command = _from(base, command)
    args = [expand(a, f"{where}: args[{i}]") for i, a in enumerate(cfg.args)]
    if base is not None:
        # An argument written as a path to a file or folder beside the config file is that
        # one; anything else (a flag, a module or package name, a URL) is left as it is.
        args = [_from(base, a) if _a_path(a, args[i - 1] if i else None)
                and (base / a).exists() else a for i, a in enumerate(args)]
    cwd = _from(base, expand(cfg.cwd, f"{where}: cwd")) if cfg.cwd is not None else None
    return replace(common, command=command, args=tuple(args), env=env, cwd=cwd)


def _env_file(path: str, where: str) -> dict[str, str]:
    from dotenv import dotenv_values

    if not Path(path).is_file():
        raise ConfigError(f"{where}: envFile: no file {path}")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def parse_servers(data: Any, source: str, base: Path | None = None) -> dict[str, McpServer]:
    """The servers of a config document (a disabled one left out); a :class:`ConfigError`
    naming ``source``, the server and the field otherwise. Relative paths are from
    ``base`` (the config file's folder), when given."""
    servers: dict[str, McpServer] = {}
    for name, raw in server_entries(data, source).items():
        server = _server(name, raw, source, base)
        if server is not None:
            servers[name] = server
    return servers


def configured_servers(settings: Settings) -> dict[str, McpServer]:
    """The servers of ``CHORDAL_MCP_SERVERS`` and of the file ``CHORDAL_MCP_CONFIG``."""
    servers = parse_servers(settings.mcp.mcp_servers, "CHORDAL_MCP_SERVERS")
    if settings.mcp.mcp_config:
        source = f"CHORDAL_MCP_CONFIG ({settings.mcp.mcp_config})"
        path = Path(settings.mcp.mcp_config).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not JSON: {exc.msg} (line {exc.lineno})") from None
        for name, server in parse_servers(data, source, path.resolve().parent).items():
            if name in servers:
                raise ConfigError(f"{source}: server {name!r} is also in "
                                  "CHORDAL_MCP_SERVERS; name it once")
            servers[name] = server
    return servers
