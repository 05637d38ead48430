/*
 * Dragonfly Fleet benchmark signatures: executables and native droppers.
 * Written for this project's benchmark; not production detections.
 */

rule bin_windows_pe
{
    meta:
        description = "Windows PE executable shipped in a Python package"
        weight = 3
    strings:
        $dos = "This program cannot be run in DOS mode" ascii
    condition:
        uint16(0) == 0x5A4D and $dos
}

rule bin_pyinstaller_bundle
{
    meta:
        description = "PyInstaller archive cookie"
        weight = 5
    strings:
        $cookie = { 4D 45 49 0C 0B 0A 0B 0E }
        $pyz = "PYZ-00.pyz" ascii
    condition:
        $cookie or $pyz
}

rule bin_ctypes_shellcode
{
    meta:
        description = "shellcode runner with ctypes"
        weight = 12
        filetype = ".py"
    strings:
        $va = "VirtualAlloc" ascii
        $rtl = "RtlMoveMemory" ascii
        $ct = "CreateThread" ascii
        $wpm = "WriteProcessMemory" ascii
        $mm = "mmap.PROT_EXEC" ascii
        $cty = "ctypes" ascii
    condition:
        $cty and (($va and ($rtl or $ct or $wpm)) or $mm)
}

rule bin_upx_packed
{
    meta:
        description = "UPX packed binary"
        weight = 2
    strings:
        $u0 = "UPX0" ascii
        $u1 = "UPX1" ascii
        $u2 = "UPX!" ascii
    condition:
        (uint16(0) == 0x5A4D or uint32(0) == 0x464C457F) and 2 of them
}

rule bin_elf_miner
{
    meta:
        description = "cryptocurrency miner strings"
        weight = 8
    strings:
        $a = "stratum+tcp://" ascii
        $b = "xmrig" ascii nocase
        $c = "--donate-level" ascii
        $d = "cryptonight" ascii nocase
        $e = "pool.minexmr.com" ascii
    condition:
        2 of them
}

rule bin_dotnet_loader
{
    meta:
        description = ".NET loader strings"
        weight = 4
    strings:
        $a = "System.Reflection.Assembly" wide ascii
        $b = "Load" wide
        $c = "mscoree.dll" ascii nocase
        $d = "_CorExeMain" ascii
    condition:
        uint16(0) == 0x5A4D and $c and $d and ($a or $b)
}

rule bin_embedded_pe_in_blob
{
    meta:
        description = "base64 of an MZ header inside source"
        weight = 6
        filetype = ".py"
    strings:
        $b64mz = "TVqQAAMAAAAEAAAA" ascii
        $b64mz2 = "TVpQAAIAAAAEAA8A" ascii
        $hexmz = "4d5a90000300000004000000" ascii nocase
    condition:
        any of them
}
