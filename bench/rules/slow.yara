/*
 * Dragonfly Fleet benchmark signatures: the three slowest rules of the set.
 * Written for this project's benchmark; not production detections.
 *
 * They are kept in their own file so that bench/run can measure the rule set
 * with and without them, as the API doc quotes production throughput both
 * ways (about 5 MB/s per core with the regex-heavy set, 40-50 MB/s without
 * its three slowest rules). The two blob regexes have few usable atoms; the
 * download rule mixes nocase and wide strings.
 */

rule obf_long_base64_blob
{
    meta:
        description = "long base64 literal in source (slow regex)"
        weight = 3
        filetype = ".py .pyw .pth"
    strings:
        $blob = /['"][A-Za-z0-9+\/]{200,}={0,2}['"]/
    condition:
        $blob
}

rule obf_hex_blob
{
    meta:
        description = "long quoted hex or \\xNN-escaped literal (slow regex)"
        weight = 3
        filetype = ".py"
    strings:
        $hex = /['"](\\x)?[0-9a-fA-F]{2}((\\x)?[0-9a-fA-F]{2}){63,}['"]/
    condition:
        $hex
}

rule install_shell_download
{
    meta:
        description = "shell download-and-run one-liners"
        weight = 9
    strings:
        $c1 = "| bash" ascii
        $c2 = "curl -fsSL http" ascii
        $w1 = "wget -q -O- http" ascii
        $w2 = "wget -qO- http" ascii
        $x = "chmod +x /tmp/" ascii
        $ps = "powershell -w hidden" ascii nocase
        $ps2 = "powershell -windowstyle hidden" ascii nocase
        $iwr = "Invoke-WebRequest" ascii nocase wide
    condition:
        ($c1 and $c2) or any of ($w*, $x, $ps, $ps2, $iwr)
}
