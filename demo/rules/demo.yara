// Dragonfly Fleet demo signatures.
//
// These rules are DEMO SIGNATURES written for Dragonfly Fleet's demo and tests.
// They are not a production malware rule set: they match the defanged sample
// packages bundled with the project and illustrate the scoring metadata:
//   weight   integer added to a file's score when the rule matches it
//   filetype space-separated path suffixes the rule counts for (empty: any file)

rule demo_exec_base64
{
    meta:
        description = "exec/eval of base64-decoded data"
        weight = 5
        filetype = ".py"
    strings:
        $exec = /(exec|eval)\s*\(\s*(base64\.)?b64decode\s*\(/
    condition:
        $exec
}

rule demo_discord_webhook
{
    meta:
        description = "Discord webhook URL (common exfiltration channel)"
        weight = 8
    strings:
        $a = "discord.com/api/webhooks/" ascii wide
        $b = "discordapp.com/api/webhooks/" ascii wide
    condition:
        any of them
}

rule demo_token_paths
{
    meta:
        description = "reads browser or Discord token stores"
        weight = 6
        filetype = ".py"
    strings:
        $leveldb = "Local Storage\\leveldb" nocase
        $login = "Login Data" nocase
        $cookies = "\\Network\\Cookies" nocase
    condition:
        2 of them
}

rule demo_setup_download
{
    meta:
        description = "setup.py that downloads or runs code at install time"
        weight = 3
        filetype = "setup.py"
    strings:
        $u1 = "urllib.request.urlopen" ascii
        $u2 = "requests.get(" ascii
        $s = "subprocess." ascii
    condition:
        any of ($u*) and $s
}

rule demo_marshal_zlib_exec
{
    meta:
        description = "exec of marshal/zlib-packed code objects"
        weight = 7
    strings:
        $m = "marshal.loads(" ascii
        $z = "zlib.decompress(" ascii
        $e = "exec(" ascii
    condition:
        $e and ($m or $z)
}

rule demo_pyinstaller_dropper
{
    meta:
        description = "writes and starts an executable"
        weight = 4
        filetype = ".py .pyw"
    strings:
        $w = /open\([^)]{1,80}\.exe['"]\s*,\s*['"]wb/
        $r = "os.startfile(" ascii
    condition:
        $w and $r
}

rule demo_known_good_marker
{
    meta:
        description = "project marker that lowers suspicion (shows negative weights)"
        weight = -2
    strings:
        $a = "SPDX-License-Identifier: Apache-2.0" ascii
    condition:
        $a
}

rule demo_informational
{
    meta:
        description = "informational rule without a weight (counts 0)"
    strings:
        $a = "socket.socket(" ascii
    condition:
        $a
}
