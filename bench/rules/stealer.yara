/*
 * Dragonfly Fleet benchmark signatures: credential and wallet stealers.
 * Written for this project's benchmark; not production detections.
 */

rule steal_browser_passwords
{
    meta:
        description = "Chromium password and cookie databases"
        weight = 8
    strings:
        $ls = "Local State" ascii
        $ek = "encrypted_key" ascii
        $ld = "Login Data" ascii
        $ck = "Network\\Cookies" ascii
        $cu = "CryptUnprotectData" ascii
        $w = "Login Data" wide
    condition:
        ($ls and $ek) or (($ld or $w) and ($ck or $cu))
}

rule steal_discord_tokens
{
    meta:
        description = "Discord token grabber"
        weight = 10
    strings:
        $ldb = "Local Storage\\leveldb" ascii nocase
        $ldb2 = "Local Storage/leveldb" ascii nocase
        $tok = /[\w-]{24}\.[\w-]{6}\.[\w-]{27}/
        $d = "discord" ascii nocase
    condition:
        ($ldb or $ldb2) and $d and ($tok or #d > 3)
}

rule steal_crypto_wallets
{
    meta:
        description = "desktop and extension crypto wallets"
        weight = 7
    strings:
        $w1 = "wallet.dat" ascii
        $w2 = "Exodus\\exodus.wallet" ascii
        $w3 = "Electrum\\wallets" ascii
        $w4 = "Atomic\\Local Storage" ascii
        $w5 = "nkbihfbeogaeaoehlefnkodbefgpgknn" ascii
        $w6 = "bfnaelmomeimhlpmgjnjophhpkkoljpa" ascii
        $w7 = "Coinomi\\Coinomi\\wallets" ascii
        $w8 = "Guarda\\Local Storage" ascii
    condition:
        2 of them
}

rule steal_browser_cookie3
{
    meta:
        description = "browser_cookie3 harvesting"
        weight = 5
        filetype = ".py"
    strings:
        $a = "import browser_cookie3" ascii
        $b = "browser_cookie3.chrome(" ascii
        $c = "browser_cookie3.load(" ascii
    condition:
        any of them
}

rule steal_screenshot_keylog
{
    meta:
        description = "screen grab and keylogger libraries together"
        weight = 5
        filetype = ".py"
    strings:
        $s1 = "ImageGrab.grab(" ascii
        $s2 = "pyautogui.screenshot(" ascii
        $k1 = "from pynput.keyboard import" ascii
        $k2 = "keyboard.on_press(" ascii
        $k3 = "GetAsyncKeyState" ascii
    condition:
        any of ($s*) and any of ($k*)
}

rule steal_ssh_and_cloud_keys
{
    meta:
        description = "reads SSH keys and cloud credentials"
        weight = 6
        filetype = ".py"
    strings:
        $a = ".ssh/id_rsa" ascii
        $b = ".aws/credentials" ascii
        $c = ".config/gcloud/credentials.db" ascii
        $d = ".kube/config" ascii
        $e = ".docker/config.json" ascii
        $f = ".npmrc" ascii
        $g = ".pypirc" ascii
    condition:
        3 of them
}

rule steal_clipboard_hijack
{
    meta:
        description = "clipboard address replacement"
        weight = 8
    strings:
        $c1 = "pyperclip.paste()" ascii
        $c2 = "win32clipboard.GetClipboardData" ascii
        $c3 = "pyperclip.copy(" ascii
        $c4 = "win32clipboard.SetClipboardText" ascii
        $btc = "bc1q" ascii
        $eth = "0x" ascii
    condition:
        ($c1 or $c2) and ($c3 or $c4) and ($btc or #eth > 3)
}

rule steal_windows_vault
{
    meta:
        description = "Windows credential vault and DPAPI"
        weight = 6
    strings:
        $a = "win32crypt" ascii
        $b = "CryptUnprotectData" ascii wide
        $c = "vaultcli.dll" ascii nocase
    condition:
        2 of them
}
