"""Services' secrets at rest: sealed with a key that only the masters hold.

Secret values are stored, replicated to the nodes' state copies and hashed
into spec digests only in sealed form (Fernet: AES-128-CBC with an
HMAC-SHA256, from the cryptography package). The key file (mode 0600) is
made by the first `up`, like the token file; every master of an inventory
must have the same key. A value is unsealed only to be piped into
`docker run --env-file /dev/stdin`, so it never lands in a file or on a
command line of a node.
"""
from dataclasses import replace

from cryptography.fernet import Fernet, InvalidToken

from files import create_private


class VaultError(Exception):
    pass


class Vault:
    def __init__(self, key):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise VaultError("the secrets key is not a valid key") from None

    @classmethod
    def open_or_create(cls, path):
        create_private(path, Fernet.generate_key().decode() + "\n")
        try:
            with open(path, "rb") as f:
                return cls(f.read().strip())
        except OSError as e:
            raise VaultError(f"{path}: cannot read the secrets key: {e}") from None
        except VaultError as e:
            raise VaultError(f"{path}: {e}") from None

    def seal(self, value):
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def unseal(self, sealed):
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise VaultError("a stored secret cannot be unsealed with this master's secrets key") from None

    def env_file(self, sealed_pairs):
        """The text of a docker env file for (name, sealed value) pairs."""
        return "".join(f"{name}={self.unseal(sealed)}\n" for name, sealed in sealed_pairs)

    def reseal(self, current, name, value):
        """The sealed form of `value` for secret `name`: the current one when
        the value did not change (so the spec digest does not either)."""
        old = dict(current).get(name)
        if old is not None:
            try:
                if self.unseal(old) == value:
                    return old
            except VaultError:
                pass
        return self.seal(value)

    def same(self, a, b):
        """Are specs `a` and `b` the same but for how their secrets were sealed?"""
        if replace(a, secrets=()) != replace(b, secrets=()) or [n for n, _ in a.secrets] != [n for n, _ in b.secrets]:
            return False
        try:
            return all(self.unseal(x) == self.unseal(y) for (_, x), (_, y) in zip(a.secrets, b.secrets))
        except VaultError:
            return False
