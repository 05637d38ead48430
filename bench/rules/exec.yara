/*
 * Dragonfly Fleet benchmark signatures: exec/eval and loader patterns.
 *
 * These rules were written for this project's benchmark (bench/). They are
 * not production detections and were not copied from any rule set: they only
 * imitate the shape and cost of a production PyPI malware rule set (tens of
 * rules, integer `weight` and `filetype` metadata, literals, hex, nocase and
 * wide strings, a few regexes of which some are deliberately slow).
 * All identifiers are unique across bench/rules/*.yara, which are compiled
 * together as one rule set.
 */

rule exec_base64_payload
{
    meta:
        description = "exec/eval of a base64-decoded string"
        weight = 10
        filetype = ".py"
    strings:
        $call = /(exec|eval)\s*\(\s*(base64\.)?(b64decode|b32decode|b16decode|a85decode|urlsafe_b64decode)\s*\(/
        $imp = "import base64"
    condition:
        $call and $imp
}

rule exec_compressed_payload
{
    meta:
        description = "exec of zlib/lzma/bz2/marshal loaded code"
        weight = 10
        filetype = ".py .pyw"
    strings:
        $z = "exec(zlib.decompress(" ascii
        $l = "exec(lzma.decompress(" ascii
        $b = "exec(bz2.decompress(" ascii
        $m = "exec(marshal.loads(" ascii
        $c = "exec(compile(zlib" ascii
    condition:
        any of them
}

rule exec_dynamic_import_os
{
    meta:
        description = "__import__ of a dangerous module by string"
        weight = 4
        filetype = ".py"
    strings:
        $i1 = "__import__('os').system(" ascii
        $i2 = "__import__(\"os\").system(" ascii
        $i3 = "__import__('subprocess')" ascii
        $i4 = "__import__(\"subprocess\")" ascii
        $i5 = "__import__('base64').b64decode(" ascii
        $i6 = "__import__('socket')" ascii
        $i7 = "__import__('ctypes')" ascii
    condition:
        any of them
}

rule exec_remote_code
{
    meta:
        description = "download and exec in one statement"
        weight = 12
        filetype = ".py"
    strings:
        $a = "exec(requests.get(" ascii
        $b = "exec(urllib.request.urlopen(" ascii
        $c = "exec(urlopen(" ascii
        $d = ".read().decode())" ascii
        $e = "exec(__import__('requests').get(" ascii
    condition:
        any of ($a, $b, $c, $e) or ($d and #d > 2)
}

rule exec_codecs_rot13
{
    meta:
        description = "rot13 decoded code executed"
        weight = 8
    strings:
        $r1 = "codecs.decode(" ascii
        $r2 = "rot13" ascii nocase
        $r3 = "rot_13" ascii nocase
        $x = "exec(" ascii
    condition:
        $r1 and ($r2 or $r3) and $x
}

rule exec_bytes_fromhex
{
    meta:
        description = "exec of hex-decoded bytes"
        weight = 8
        filetype = ".py"
    strings:
        $a = "bytes.fromhex(" ascii
        $b = "binascii.unhexlify(" ascii
        $x = "exec(" ascii
    condition:
        ($a or $b) and $x
}

rule exec_lambda_chain
{
    meta:
        description = "obfuscator-style lambda chains"
        weight = 6
        filetype = ".py"
    strings:
        $l = "__ = lambda" ascii
        $d = "[::-1]" ascii
    condition:
        #l > 3 and $d
}

rule exec_pyarmor_runtime
{
    meta:
        description = "pyarmor runtime loader"
        weight = 3
    strings:
        $a = "__pyarmor__" ascii
        $b = "pytransform" ascii
        $c = "__armor_enter__" ascii
    condition:
        2 of them
}
