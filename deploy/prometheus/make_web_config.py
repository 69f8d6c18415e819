"""Write Prometheus's web config (basic auth) from PROMETHEUS_USER and PROMETHEUS_PASSWORD,
and beside it the API key Prometheus scrapes the HTTP API with (PROMETHEUS_API_KEY: the
secret of a key named for Prometheus in CHORDAL_API_KEYS).

Prometheus takes only a bcrypt hash of the password, and Grafana needs the password itself
to query it: so .env holds the password once, and this one-shot (the `prometheus-auth`
service of docker-compose.yml) hashes it before Prometheus starts. Nothing is hard-coded.

    python make_web_config.py OUT.yml
"""

import os
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # crypt: fine on Python 3.11/3.12
    import crypt


def main(out: str) -> None:
    user = os.environ["PROMETHEUS_USER"]
    password = os.environ["PROMETHEUS_PASSWORD"]
    if not user.replace("-", "").replace("_", "").isalnum():
        sys.exit("PROMETHEUS_USER: letters, digits, '-' and '_' only")
    if len(password) < 12:
        sys.exit("PROMETHEUS_PASSWORD: at least 12 characters")
    # METHOD_BLOWFISH is bcrypt, the one hash Prometheus's web config takes.
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324
    if not hashed or not hashed.startswith("$2"):
        sys.exit("this Python's crypt has no bcrypt (use python:3.11-slim)")
    with open(out, "w") as f:
        f.write(f'basic_auth_users:\n  {user}: "{hashed}"\n')
    print(f"wrote {out}: basic auth for {user}")
    api_key = os.environ["PROMETHEUS_API_KEY"]
    if len(api_key) < 16:
        sys.exit("PROMETHEUS_API_KEY: at least 16 characters (an API key's secret)")
    key_file = os.path.join(os.path.dirname(out), "api-key")
    with open(key_file, "w") as f:
        f.write(api_key)
    print(f"wrote {key_file}")


if __name__ == "__main__":
    main(sys.argv[1])
