/*
 * Dragonfly Fleet benchmark signatures: exfiltration endpoints and network.
 * Written for this project's benchmark; not production detections.
 */

rule net_discord_webhook
{
    meta:
        description = "Discord webhook URL"
        weight = 6
    strings:
        $re = /discord(app)?\.com\/api\/webhooks\/[0-9]{15,20}\/[A-Za-z0-9_\-]{30,}/
        $w = "discord.com/api/webhooks" wide
    condition:
        any of them
}

rule net_telegram_bot
{
    meta:
        description = "Telegram bot API use"
        weight = 5
    strings:
        $a = "api.telegram.org/bot" ascii
        $b = "sendDocument" ascii
        $c = "sendMessage?chat_id=" ascii
    condition:
        $a and ($b or $c)
}

rule net_paste_sites
{
    meta:
        description = "raw paste and anonymous file hosts"
        weight = 4
    strings:
        $p1 = "pastebin.com/raw" ascii nocase
        $p2 = "paste.ee/r/" ascii
        $p3 = "hastebin.com/raw" ascii
        $p4 = "rentry.co/" ascii
        $f1 = "transfer.sh" ascii
        $f2 = "anonfiles.com" ascii
        $f3 = "gofile.io/uploadFile" ascii
        $f4 = "file.io" ascii
        $f5 = "0x0.st" ascii
    condition:
        any of them
}

rule net_tunnels
{
    meta:
        description = "tunnel and C2 relay hosts"
        weight = 4
    strings:
        $a = ".ngrok.io" ascii
        $b = ".ngrok-free.app" ascii
        $c = "trycloudflare.com" ascii
        $d = "serveo.net" ascii
        $e = "oast.fun" ascii
        $f = "interact.sh" ascii
        $g = "burpcollaborator.net" ascii
    condition:
        any of them
}

rule net_raw_ip_url
{
    meta:
        description = "URL to a raw IPv4 address"
        weight = 2
    strings:
        $url = /https?:\/\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{2,5})?\/[^\s'"]{0,64}/
    condition:
        $url
}

rule net_reverse_shell
{
    meta:
        description = "classic Python reverse shell"
        weight = 15
        filetype = ".py"
    strings:
        $s = "socket.socket(socket.AF_INET,socket.SOCK_STREAM)" ascii
        $s2 = "socket.socket(socket.AF_INET, socket.SOCK_STREAM)" ascii
        $d1 = "os.dup2(s.fileno(),0)" ascii
        $d2 = "os.dup2(s.fileno(), 0)" ascii
        $p = "pty.spawn(\"/bin/" ascii
        $p2 = "pty.spawn('/bin/" ascii
        $sh = "/bin/sh -i" ascii
    condition:
        ($s or $s2) and ($d1 or $d2 or $p or $p2 or $sh)
}

rule net_dns_exfil
{
    meta:
        description = "data exfiltration through DNS lookups"
        weight = 5
        filetype = ".py"
    strings:
        $a = "socket.gethostbyname(" ascii
        $b = "getpass.getuser()" ascii
        $c = "platform.node()" ascii
        $h = ".hex()" ascii
    condition:
        $a and ($b or $c) and $h
}

rule net_post_env
{
    meta:
        description = "posts the environment or host facts to a URL"
        weight = 6
        filetype = ".py"
    strings:
        $post = "requests.post(" ascii
        $e1 = "dict(os.environ)" ascii
        $e2 = "os.environ.copy()" ascii
        $h1 = "socket.gethostname()" ascii
        $h2 = "getpass.getuser()" ascii
        $h3 = "uuid.getnode()" ascii
    condition:
        $post and (any of ($e*)) and (any of ($h*))
}

rule net_ip_lookup
{
    meta:
        description = "public IP lookup services"
        weight = 2
    strings:
        $a = "api.ipify.org" ascii
        $b = "ipinfo.io/json" ascii
        $c = "ip-api.com/json" ascii
        $d = "checkip.amazonaws.com" ascii
        $e = "icanhazip.com" ascii
    condition:
        any of them
}
