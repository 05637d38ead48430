/*
 * Dragonfly Fleet benchmark signatures: encoded blobs and obfuscation.
 * Written for this project's benchmark; not production detections.
 * The deliberately slow blob regexes are in slow.yara.
 */

rule obf_chr_join
{
    meta:
        description = "string built from chr() lists"
        weight = 4
        filetype = ".py"
    strings:
        $a = "''.join(chr(" ascii
        $b = "\"\".join(chr(" ascii
        $c = "''.join(map(chr," ascii
        $d = "\"\".join(map(chr," ascii
    condition:
        any of them
}

rule obf_reversed_base64
{
    meta:
        description = "base64 decoding of a reversed string"
        weight = 6
    strings:
        $a = "b64decode(" ascii
        $b = "[::-1]" ascii
        $c = "exec" ascii
    condition:
        $a and $b and $c
}

rule obf_pyobfuscate_marker
{
    meta:
        description = "markers left by public Python obfuscators"
        weight = 5
    strings:
        $a = "pyobfuscate" ascii nocase
        $b = "Obfuscated with" ascii nocase
        $c = "BlankOBF" ascii
        $d = "Hyperion" ascii
        $e = "Kramer" ascii
    condition:
        any of them
}

rule obf_marshal_pyc_in_source
{
    meta:
        description = "marshal.loads of an embedded code object"
        weight = 7
        filetype = ".py"
    strings:
        $m = "marshal.loads(b'\\xe3" ascii
        $n = "marshal.loads(b\"\\xe3" ascii
        $o = { 6D 61 72 73 68 61 6C 2E 6C 6F 61 64 73 28 [0-32] 5C 78 65 33 }
    condition:
        any of them
}

rule obf_zero_width_chars
{
    meta:
        description = "zero-width characters in identifiers"
        weight = 2
        filetype = ".py"
    strings:
        $zw1 = { E2 80 8B }
        $zw2 = { E2 80 8C }
        $zw3 = { E2 80 8D }
        $bom = { EF BB BF }
    condition:
        #zw1 + #zw2 + #zw3 > 20 and not $bom at 0
}

rule obf_exec_semicolon_padding
{
    meta:
        description = "code pushed off screen by whitespace before exec"
        weight = 4
        filetype = ".py"
    strings:
        $a = { 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 3B ( 65 78 65 63 | 69 6D 70 6F 72 74 ) }
    condition:
        $a
}
