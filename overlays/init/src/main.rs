//! `init`: reads the device config the core loaded from the store, and brings the link to the server up:
//! the network interface (static address from the config, or DHCP), or the console's serial line.
//! Without a usable config or network, the application starts.
#![no_std]
#![no_main]

use rota_abi::{status, verdict, Context, NetParams, Services};
use rota_wire::ConfigView;

rota_abi::overlay!(run);

fn run(svc: &Services, ctx: &mut Context) -> i32 {
    let cfg = match ConfigView::parse(ctx.config()) {
        Ok(c) => c,
        Err(_) => {
            svc.write(b"init: no valid device config; starting app\n");
            return verdict::APP;
        }
    };
    svc.write(b"init: device ");
    svc.write_dec(cfg.device_id);
    svc.write(b", boot ");
    svc.write_dec(ctx.boot_count);
    svc.write(b", protocol v");
    svc.write_dec(u32::from(cfg.protocol));
    svc.write(match cfg.link {
        rota_wire::Link::Tcp => b"\n".as_slice(),
        rota_wire::Link::Serial => b", serial link\n".as_slice(),
    });
    let params = NetParams {
        ip: cfg.ip.unwrap_or([0; 4]),
        prefix: cfg.netmask.iter().map(|b| b.count_ones() as u8).sum(),
        gateway: cfg.gateway,
        // luaOTA's protocol is strictly ping-pong with records of at most 1460 bytes.
        rx_window: if cfg.protocol == 1 { 2048 } else { 0 },
        link: match cfg.link {
            rota_wire::Link::Tcp => rota_abi::net::LINK_TCP,
            rota_wire::Link::Serial => rota_abi::net::LINK_SERIAL,
        },
        seed: ctx.boot_count,
    };
    let rc = svc.net_up(&params);
    if rc == status::ENODEV {
        svc.write(b"init: no network interface; starting app\n");
        return verdict::APP;
    }
    if rc != status::OK {
        svc.write(b"init: network failed; starting app\n");
        return verdict::APP;
    }
    ctx.net_up_ms = svc.time_ms();
    status::OK
}
