/*
 * Dragonfly Fleet benchmark signatures: install-time hooks and droppers.
 * Written for this project's benchmark; not production detections.
 */

rule install_cmdclass_override
{
    meta:
        description = "setup.py overrides install with custom code"
        weight = 3
        filetype = "setup.py"
    strings:
        $a = "cmdclass" ascii
        $b = "from setuptools.command.install import install" ascii
        $c = "def run(self)" ascii
    condition:
        all of them
}

rule install_powershell_encoded
{
    meta:
        description = "encoded PowerShell command"
        weight = 9
    strings:
        $a = "powershell" ascii nocase
        $b = "-EncodedCommand" ascii nocase
        $c = " -enc " ascii nocase
        $d = "FromBase64String" ascii nocase
        $e = "powershell" wide nocase
    condition:
        ($a or $e) and ($b or $c or $d)
}

rule install_startup_persistence
{
    meta:
        description = "writes to autostart locations"
        weight = 7
    strings:
        $r1 = "Software\\Microsoft\\Windows\\CurrentVersion\\Run" ascii nocase
        $r2 = "Start Menu\\Programs\\Startup" ascii nocase
        $l1 = "/etc/cron.d/" ascii
        $l2 = "crontab -l" ascii
        $l3 = ".config/autostart/" ascii
        $l4 = "/etc/systemd/system/" ascii
        $l5 = "LaunchAgents/" ascii
    condition:
        any of ($r*) or 2 of ($l*)
}

rule install_pth_autorun
{
    meta:
        description = "code in a .pth file runs at every interpreter start"
        weight = 8
        filetype = ".pth"
    strings:
        $imp = "import " ascii
        $exec = "exec(" ascii
        $sub = "subprocess" ascii
    condition:
        $imp at 0 and ($exec or $sub)
}

rule install_defender_exclusion
{
    meta:
        description = "disables or bypasses Windows Defender"
        weight = 10
    strings:
        $a = "Add-MpPreference -ExclusionPath" ascii nocase
        $b = "Set-MpPreference -DisableRealtimeMonitoring" ascii nocase
        $c = "DisableAntiSpyware" ascii
    condition:
        any of them
}

rule install_subprocess_hidden
{
    meta:
        description = "hidden child process on Windows"
        weight = 4
        filetype = ".py"
    strings:
        $a = "CREATE_NO_WINDOW" ascii
        $b = "STARTF_USESHOWWINDOW" ascii
        $c = "subprocess.Popen(" ascii
        $d = "DETACHED_PROCESS" ascii
    condition:
        $c and 2 of ($a, $b, $d)
}

rule install_typosquat_note
{
    meta:
        description = "typosquat packages that point at the real name"
        weight = 1
        filetype = "PKG-INFO METADATA"
    strings:
        $a = "pip install" ascii
        $b = "did you mean" ascii nocase
        $c = "this package is a placeholder" ascii nocase
    condition:
        $a and ($b or $c)
}
