using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>
/// The two LibTorchSharp entry points TorchSharp 0.107 does not expose publicly: <c>THSTensor_new</c> (wraps
/// <c>torch::from_blob</c>, i.e. a tensor over foreign memory) and <c>THSTensor_data</c> (the data pointer).
/// </summary>
/// <remarks>
/// Native signature (LibTorchSharp THSTensor.cpp, TorchSharp 0.107):
/// <c>Tensor THSTensor_new(void* data, void (*deleter)(void*), const int64_t* sizes, int szlength,
/// int8_t scalar_type, int8_t dtype, int device_type, int device_index, bool requires_grad)</c>.
/// With <c>scalar_type == dtype</c> and <c>device_type == 0</c> (CPU) it performs no conversion and no copy.
/// The library is resolved exactly as TorchSharp resolves it, so the copy <see cref="GraniteRuntime"/> loaded is used.
/// </remarks>
internal static unsafe class TorchNative
{
    private static readonly object Gate = new();
    private static delegate* unmanaged[Cdecl]<IntPtr, delegate* unmanaged[Cdecl]<IntPtr, void>, long*, int, sbyte, sbyte, int, int, byte, IntPtr> _new;
    private static delegate* unmanaged[Cdecl]<IntPtr, IntPtr> _data;

    private static void EnsureBound()
    {
        if (_data != null) return;
        lock (Gate)
        {
            if (_data != null) return;
            GraniteRuntime.EnsureLoaded();
            torch.InitializeDeviceType(DeviceType.CPU); // makes TorchSharp load its native library first
            var lib = LoadLibTorchSharp();
            _new = (delegate* unmanaged[Cdecl]<IntPtr, delegate* unmanaged[Cdecl]<IntPtr, void>, long*, int, sbyte, sbyte, int, int, byte, IntPtr>)
                NativeLibrary.GetExport(lib, "THSTensor_new");
            _data = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr>)NativeLibrary.GetExport(lib, "THSTensor_data");
        }
    }

    private static IntPtr LoadLibTorchSharp()
    {
        if (NativeLibrary.TryLoad("LibTorchSharp", typeof(torch).Assembly, null, out var h)) return h;
        foreach (var name in new[] { "libLibTorchSharp.so", "libLibTorchSharp.dylib", "LibTorchSharp.dll" })
            if (NativeLibrary.TryLoad(name, out h)) return h;
        throw new InvalidOperationException("LibTorchSharp native library could not be resolved; " + GraniteRuntime.LoadReport);
    }

    /// <summary>
    /// Wraps <paramref name="data"/> as a CPU tensor without copying. <paramref name="deleter"/> is called by LibTorch
    /// with <paramref name="data"/> when the tensor storage is freed (last tensor sharing it disposed).
    /// </summary>
    /// <returns>The new tensor, or <c>null</c> when LibTorch refused (then the deleter was not taken over).</returns>
    public static Tensor? FromBlob(IntPtr data, long[] shape, ScalarType dtype, delegate* unmanaged[Cdecl]<IntPtr, void> deleter)
    {
        EnsureBound();
        IntPtr handle;
        fixed (long* dims = shape.Length == 0 ? new long[1] : shape)
        {
            handle = _new(data, deleter, dims, shape.Length, (sbyte)dtype, (sbyte)dtype, 0, 0, 0);
        }
        return handle == IntPtr.Zero ? null : Tensor.UnsafeCreateTensor(handle);
    }

    /// <summary>Address of the first element of a tensor (includes the storage offset).</summary>
    public static IntPtr DataPointer(Tensor t)
    {
        EnsureBound();
        var p = _data(t.Handle);
        if (p == IntPtr.Zero && t.numel() > 0) torch.CheckForErrors();
        return p;
    }

    /// <summary>A no-op deleter for memory owned elsewhere.</summary>
    [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
    public static void NoOpDeleter(IntPtr data) { }
}
