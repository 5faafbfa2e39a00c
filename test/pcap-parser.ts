/** pcap-parser, the independent second pcap reader of the tests. */
import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';

export interface ParserPacket {
  tsSec: number;
  /** The raw fraction field: µs, or ns for a nanosecond file fed under the µs magic. */
  tsFraction: number;
  caplen: number;
  origlen: number;
  data: Buffer;
}

const pcapParser = createRequire(import.meta.url)('pcap-parser') as { parse(input: string): EventEmitter };

/** The independent reader: pcap-parser, event-based. */
export function readWithPcapParser(file: string): Promise<ParserPacket[]> {
  return new Promise((resolve, reject) => {
    const packets: ParserPacket[] = [];
    const parser = pcapParser.parse(file);
    parser.on(
      'packet',
      (packet: {
        header: { timestampSeconds: number; timestampMicroseconds: number; capturedLength: number; originalLength: number };
        data: Buffer;
      }) => {
        const h = packet.header;
        packets.push({
          tsSec: h.timestampSeconds,
          tsFraction: h.timestampMicroseconds,
          caplen: h.capturedLength,
          origlen: h.originalLength,
          data: Buffer.from(packet.data),
        });
      },
    );
    parser.on('error', reject);
    parser.on('end', () => resolve(packets));
  });
}
