/* ProcessPrng, which Rust's standard library (1.78 and later) takes its randomness from on
 * Windows. Windows 10 and later have it in bcryptprimitives.dll; Debian 12's wine 8.0 has no
 * such DLL, so no Rust program starts under it. The wine tests (tests/platforms.rs) put this
 * one, built with mingw-w64, into their wine prefix. Not part of any agent that ships. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
