"""Dolibarr's reversible encryption of stored secrets (``dolEncrypt`` / ``dolDecrypt``).

Dolibarr 20.0.2 stores API keys as ``dolcrypt:AES-256-CTR:<iv>:<base64>``. The AES key
is the 32 ASCII characters of the instance unique id (``$dolibarr_main_instance_unique_id``
in ``conf.php``) and the IV is the fixed 16 ASCII characters ``10fbb3f05469219f``, which are
the first 16 hex digits of md5('dolibarr'). So the same plaintext and id always give the
same stored value, which is what lets Dolibarr look a key up with an SQL equality.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PREFIX = "dolcrypt:"
ALGORITHM = "AES-256-CTR"
FIXED_IV = "10fbb3f05469219f"
KEY_LENGTH = 32


class DolcryptError(ValueError):
    """A value or an instance id that the scheme cannot use."""


def encrypt(plaintext: str, instance_id: str) -> str:
    """Return ``plaintext`` encrypted the way Dolibarr stores ``llx_user.api_key``."""
    encryptor = _cipher(instance_id, FIXED_IV).encryptor()
    ciphertext = encryptor.update(plaintext.encode("utf-8")) + encryptor.finalize()
    encoded = base64.b64encode(ciphertext).decode("ascii")
    return f"{PREFIX}{ALGORITHM}:{FIXED_IV}:{encoded}"


def decrypt(value: str, instance_id: str) -> str:
    """Return the plaintext of a ``dolcrypt:`` value, or ``value`` unchanged when it is plain.

    Dolibarr also accepts plaintext in the encrypted columns, so a value without the
    prefix is returned as it is. A wrong instance id gives garbage, not an error, as in
    Dolibarr: callers compare the result with what they expected. Bytes that are not
    UTF-8 are replaced, so the garbage is still a string.
    """
    if not value.startswith(PREFIX):
        return value

    parts = value.split(":", 3)
    if len(parts) != 4 or parts[1] != ALGORITHM:
        raise DolcryptError(f"unsupported dolcrypt value: expected the form {PREFIX}{ALGORITHM}:<iv>:<base64>")
    iv, encoded = parts[2], parts[3]

    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise DolcryptError("invalid base64 in a dolcrypt value") from error

    decryptor = _cipher(instance_id, iv).decryptor()
    plaintext = decryptor.update(ciphertext) + decryptor.finalize()
    return plaintext.decode("utf-8", errors="replace")


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def _cipher(instance_id: str, iv: str) -> Cipher:
    """Build the cipher. The key is the id's bytes, NUL-padded or cut to 32 bytes as PHP's openssl_encrypt does."""
    if not instance_id:
        # The message never carries the id itself, which is a secret.
        raise DolcryptError("instance unique id is empty: use the value of $dolibarr_main_instance_unique_id")
    key = instance_id.encode("utf-8")[:KEY_LENGTH].ljust(KEY_LENGTH, b"\0")
    iv_bytes = iv.encode("ascii", errors="replace")
    if len(iv_bytes) != 16:
        raise DolcryptError(f"dolcrypt IV must be 16 ASCII characters, got {len(iv_bytes)}")
    return Cipher(algorithms.AES(key), modes.CTR(iv_bytes))
