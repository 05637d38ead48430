/*
 * Dragonfly Fleet benchmark signatures: weak signals and negative weights.
 * Written for this project's benchmark; not production detections.
 */

rule weak_os_system
{
    meta:
        description = "os.system or subprocess shell=True"
        weight = 1
        filetype = ".py"
    strings:
        $a = "os.system(" ascii
        $b = "shell=True" ascii
        $c = "os.popen(" ascii
    condition:
        any of them
}

rule weak_eval_input
{
    meta:
        description = "eval of something"
        weight = 1
        filetype = ".py"
    strings:
        $a = "eval(" ascii
    condition:
        #a > 2
}

rule weak_getattr_builtins
{
    meta:
        description = "builtins fetched by name"
        weight = 2
        filetype = ".py"
    strings:
        $a = "getattr(__builtins__" ascii
        $b = "globals()['__builtins__']" ascii
        $c = "vars(__builtins__)" ascii
        $d = "__builtins__.__dict__[" ascii
    condition:
        any of them
}

rule weak_temp_executable
{
    meta:
        description = "writes a file to a temp dir and runs it"
        weight = 3
        filetype = ".py"
    strings:
        $t1 = "tempfile.gettempdir()" ascii
        $t2 = "os.getenv('TEMP')" ascii
        $t3 = "os.environ['TEMP']" ascii
        $t4 = "os.getenv(\"APPDATA\")" ascii
        $r1 = "os.startfile(" ascii
        $r2 = "subprocess.Popen(" ascii
        $r3 = ".exe" ascii
    condition:
        any of ($t*) and $r1 or (any of ($t*) and $r2 and $r3)
}

rule benign_test_suite
{
    meta:
        description = "looks like a unit test module (lowers the score)"
        weight = -2
        filetype = "_test.py test.py tests.py"
    strings:
        $a = "import unittest" ascii
        $b = "import pytest" ascii
        $c = "def test_" ascii
    condition:
        ($a or $b) and #c > 2
}

rule benign_license_header
{
    meta:
        description = "standard license header (lowers the score)"
        weight = -1
        filetype = ".py"
    strings:
        $a = "Licensed under the Apache License, Version 2.0" ascii
        $b = "Permission is hereby granted, free of charge" ascii
        $c = "SPDX-License-Identifier:" ascii
    condition:
        any of them in (0..4096)
}
